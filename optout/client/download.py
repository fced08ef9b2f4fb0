"""Fetching the feed's files over HTTP(S), with size caps and wall-clock deadlines.

A deadline covers the whole exchange (name resolution aside): connecting, the
status line and headers, and the body. Per-read socket timeouts alone do not
bound it, since a server that drips one byte a second never lets a read time
out; so a timer shuts the connection's socket down when the deadline passes,
which wakes any read blocked on it.

Redirects stay on http(s) and never go from https to http; the partner token is
an unredirected header, so it is never sent to where a redirect points.
"""

import functools
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

USER_AGENT = "optout-client/1"
ARTIFACT_MIN_RATE = 256 * 1024  # bytes/s an artifact's deadline allows for, on top of the base deadline


class PullError(Exception):
    """The feed's answer cannot be accepted; the message says why."""


class TooLarge(PullError):
    """A response longer than its cap."""


def artifact_deadline(size: int, base: float) -> float:
    """Seconds allowed for an artifact of ``size`` bytes: ``base`` plus its size at ``ARTIFACT_MIN_RATE``."""
    return base + size / ARTIFACT_MIN_RATE


class _Deadline:
    """Shuts down every socket it tracks once ``seconds`` have passed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(0.001, self.ends - time.monotonic())

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()


def _connection_class(base: type[http.client.HTTPConnection], deadline: _Deadline):
    class Connection(base):
        def connect(self):
            self.timeout = min(self.timeout, deadline.remaining())
            super().connect()
            deadline.track(self.sock)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self._class = _connection_class(http.client.HTTPConnection, deadline)

    def http_open(self, req):
        return self.do_open(self._class, req)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying context per process: loading the system's CA certificates takes a tenth of a second."""
    return ssl.create_default_context()


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__(context=_tls_context())
        self._class = _connection_class(http.client.HTTPSConnection, deadline)

    def https_open(self, req):
        return self.do_open(self._class, req, context=self._context)


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise PullError(f"{req.full_url} redirects to {newurl}: refused")
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise PullError(f"{req.full_url} redirects from https to {newurl}: refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, *, cap: int, token: str | None, timeout: float, deadline: float, out=None) -> bytes:
    """GET ``url`` within ``deadline`` seconds in all; the body, or with ``out`` writes it there and returns b"".

    ``timeout`` bounds each read; more than ``cap`` bytes raise ``TooLarge``. Raises ``PullError``.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise PullError(f"{url}: only http and https feeds are supported")
    # The scheme is checked just above: no file: or ftp: URL gets here.
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})  # noqa: S310
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    with _Deadline(deadline) as clock:
        opener = urllib.request.build_opener(_HTTPHandler(clock), _HTTPSHandler(clock), _NoDowngrade())
        try:
            return _read(opener, request, url, cap=cap, timeout=min(timeout, deadline), out=out, clock=clock)
        except PullError:
            if clock.expired:
                raise PullError(f"{url} took longer than {deadline:.0f} s: refused") from None
            raise
        except urllib.error.HTTPError as exc:
            hint = " (the partner feed needs --token)" if exc.code in (401, 403) else ""
            raise PullError(f"{url} answered HTTP {exc.code} {exc.reason}{hint}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if clock.expired:
                raise PullError(f"{url} took longer than {deadline:.0f} s: refused") from None
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise PullError(f"cannot reach {url}: {reason}") from None


def _read(opener, request, url: str, *, cap: int, timeout: float, out, clock: _Deadline) -> bytes:
    with opener.open(request, timeout=timeout) as response:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise PullError(f"{url} came with Content-Encoding {encoding}, which was not asked for")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise TooLarge(f"{url} is {int(length)} bytes, more than the {cap} expected: refused")
        received = 0
        chunks = []
        while True:
            chunk = response.read(min(1 << 16, cap + 1 - received))
            if clock.expired:
                raise PullError("deadline")
            if not chunk:
                break
            received += len(chunk)
            if received > cap:
                raise TooLarge(f"{url} sent more than the {cap} bytes expected (endless data?): refused")
            if out is not None:
                out.write(chunk)
            else:
                chunks.append(chunk)
            if received == cap:
                # One more read tells a body of exactly ``cap`` bytes from a longer one.
                if response.read(1):
                    raise TooLarge(f"{url} sent more than the {cap} bytes expected (endless data?): refused")
                break
        return b"".join(chunks)
