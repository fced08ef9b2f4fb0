"""The one SSRF-safe fetcher: everything fetched because a stranger typed a URL goes through ``fetch_image``.

Pure Python, no Django: callers pass the settings (``OPTOUT_FETCH_ALLOW_LOOPBACK``,
``OPTOUT_FETCH_TIMEOUT``, ``OPTOUT_MAX_IMAGE_BYTES``) as arguments.

What it does, and why:

- Only ``http`` and ``https``, only ports 80 and 443, no user information in the
  URL (``http://user:pass@host/`` is refused rather than sent as a header).
- It resolves the host itself (through ``resolver``, ``socket.getaddrinfo`` by
  default, bounded by the deadline) and checks **every** address: one private
  address among public ones refuses the whole URL, because we cannot choose
  which one the connection would get. IP literals are read with ``inet_aton``
  rules (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) and checked without any
  lookup. ``is_public_address`` is the rule: the address is outside IANA's
  special-purpose IPv4 blocks (listed below), ``ipaddress`` calls it global and
  not private, reserved, multicast, loopback, link-local or unspecified, and IPv6 forms that carry IPv4 or reach private space are
  refused outright (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 both
  well-known and local-use, Teredo, site-local, unique-local) except 6to4,
  which is allowed only when its embedded IPv4 address is public. Refusing
  NAT64 means a host on an IPv6-only network behind DNS64 cannot fetch IPv4-only
  sites; we accept that.
- It connects to the exact address it checked: the connection classes below
  take the checked addresses and never resolve again, while the ``Host`` header
  and TLS (SNI and certificate verification) use the host name. No DNS
  rebinding window.
- Redirects (301, 302, 303, 307, 308) are followed by hand, each hop parsed and
  checked like the first, at most ``max_redirects``.
- Proxy variables (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ...) are
  ignored: ``http.client`` never reads them, and a proxy would be a second
  place where the name is resolved.
- One deadline, ``timeout`` seconds, covers DNS, connecting, TLS, every hop and
  the body. Each socket operation gets the remaining time, and a watchdog
  shuts the socket down when the deadline passes, so a server that drips one
  byte at a time cannot stretch a fetch.
- The body is capped at ``max_bytes`` while it streams (a ``Content-Length``
  above the cap is refused before reading). We ask for ``identity``; a server
  that sends ``gzip`` or ``deflate`` anyway is decompressed under the same cap
  (a decompression bomb stops at ``max_bytes``); any other encoding is refused.
- The content must start like a JPEG, PNG, GIF or WebP file, whatever
  ``Content-Type`` says; ``FetchResult.content_type`` is the type we detected.

``allow_loopback=True`` (the demo and the tests) allows loopback addresses,
127.0.0.0/8 and ``::1`` and nothing else, **on any port**, since test servers
listen on high ports. Every other rule still applies.

Errors are one family with a ``code`` that matches the per-item verdicts of a
removal request: ``FetchRefused`` (``refused``), ``FetchUnreachable``
(``unreachable``: DNS failure, connection error, timeout, HTTP error status,
too many redirects, body over the cap) and ``NotAnImage`` (``not_an_image``).
Their messages are safe to show to the person who typed the URL. Logs name
the host and the reason, never the query string.
"""

import functools
import http.client
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from optout.client.canonical import parse_ipv4

logger = logging.getLogger(__name__)

USER_AGENT = "optout-fetcher/1 (checks removal requests for AI training data; one request per URL)"
ALLOWED_PORTS = frozenset({80, 443})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NEVER_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/96",  # IPv4-compatible (deprecated); also :: and ::1
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated
        "64:ff9b::/96",  # NAT64, well-known prefix
        "64:ff9b:1::/48",  # NAT64, local use
        "2001::/32",  # Teredo
        "fec0::/10",  # site-local (deprecated)
        "fc00::/7",  # unique local
    )
)
# The IANA special-purpose IPv4 blocks, spelled out so the rule does not move
# with the Python version's idea of is_global (3.11 misses 192.0.0.0/24, and
# counts multicast as global).
_NEVER_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and broadcast
    )
)
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters left as they are in the request target; anything else (spaces,
# non-ASCII) is percent-encoded, and existing escapes are kept.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"

_TIMED_OUT = "The server took too long to answer."
_REFUSED_ADDRESS = "This address points to a private, local or reserved network; only public web addresses are fetched."


class FetchError(Exception):
    """A fetch that did not give an image. ``code`` is the per-item verdict; ``message`` is safe to show."""

    code = "unreachable"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class FetchRefused(FetchError):
    """We will not fetch this: blocked address, scheme, port, or a URL we cannot read."""

    code = "refused"


class FetchUnreachable(FetchError):
    """We tried and got no image: DNS, connection, timeout, HTTP status, redirects, size."""

    code = "unreachable"


class NotAnImage(FetchError):
    """The server answered, but not with a JPEG, PNG, GIF or WebP file."""

    code = "not_an_image"


@dataclass(frozen=True)
class FetchResult:
    data: bytes
    content_type: str  # detected from the bytes, not the server's claim
    final_url: str  # after redirects


def fetch_image(
    url: str,
    *,
    allow_loopback: bool = False,
    timeout: float = 15,
    max_bytes: int = 20 * 1024 * 1024,
    max_redirects: int = 3,
    resolver=socket.getaddrinfo,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchResult:
    """Fetch the image at ``url`` under the rules of this module; raises a ``FetchError``.

    ``resolver`` is called as ``resolver(host, port, type=socket.SOCK_STREAM)``
    and must answer like ``socket.getaddrinfo``. ``ssl_context`` defaults to
    the system trust store with host name checking.
    """
    deadline = _Deadline(timeout)
    current = url
    target = None
    try:
        for _hop in range(max_redirects + 1):
            target = _parse_target(current, allow_loopback=allow_loopback)
            addresses = _checked_addresses(target, resolver, deadline, allow_loopback=allow_loopback)
            result = _fetch_once(
                target, addresses, deadline=deadline, max_bytes=max_bytes, ssl_context=ssl_context or _default_context()
            )
            if isinstance(result, FetchResult):
                logger.info("fetched %s bytes of %s from host %s", len(result.data), result.content_type, target.host)
                return result
            current = result
        raise FetchUnreachable("The address redirects too many times.")
    except FetchError as exc:
        host = target.host if target is not None else "?"
        logger.info("fetch from host %s failed (%s): %s", host, exc.code, exc.message)
        raise


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet (see the module docstring for the rule)."""
    if address.version == 4:
        if any(address in network for network in _NEVER_PUBLIC_V4):
            return False
    else:
        if address.scope_id or any(address in network for network in _NEVER_PUBLIC_V6):
            return False
        if address in _SIX_TO_FOUR and not is_public_address(address.sixtofour):
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def is_loopback_address(address: IPAddress) -> bool:
    """127.0.0.0/8 and ::1, and nothing else (not ``::ffff:127.0.0.1``)."""
    if address.version == 4:
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6 and not address.scope_id


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of an image by its magic bytes, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# --- One hop --------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # ASCII: a Punycode name or an IP address without brackets
    address: IPAddress | None  # set when the host is an IP literal
    port: int
    request_path: str


class _Deadline:
    def __init__(self, seconds: float):
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._at - time.monotonic()
        if left <= 0:
            raise FetchUnreachable(_TIMED_OUT)
        return left

    def expired(self) -> bool:
        return time.monotonic() >= self._at


def _parse_target(url: str, *, allow_loopback: bool) -> _Target:
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or _CONTROL.search(url):
        raise FetchRefused("This is not a web address we can fetch.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise FetchRefused("This is not a web address we can fetch.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused("Only http and https addresses are fetched.")
    if "@" in parts.netloc:
        raise FetchRefused("Addresses with a user name or password are not fetched.")
    if port is None:
        port = 443 if scheme == "https" else 80
    elif port not in ALLOWED_PORTS and not allow_loopback:
        # With loopback allowed the port can only be judged once the addresses are known.
        raise FetchRefused("Only the standard web ports (80 and 443) are fetched.")
    host, address = _parse_host(parts.hostname or "")
    request_path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        request_path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return _Target(url=url, scheme=scheme, host=host, address=address, port=port, request_path=request_path)


def _parse_host(host: str) -> tuple[str, IPAddress | None]:
    if ":" in host:  # urlsplit took it from between brackets
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise FetchRefused("This is not a web address we can fetch.") from None
        return host, address
    ipv4 = parse_ipv4(host[:-1] if host.endswith(".") else host)
    if ipv4 is not None:
        return str(ipv4), ipv4
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise FetchRefused("This is not a web address we can fetch.") from None
    if not _HOST_NAME.fullmatch(host):
        raise FetchRefused("This is not a web address we can fetch.")
    return host, None


def _checked_addresses(target: _Target, resolver, deadline: _Deadline, *, allow_loopback: bool) -> list[IPAddress]:
    """Every address of the target, all checked; the only addresses we may connect to."""
    addresses = [target.address] if target.address is not None else _resolve(target, resolver, deadline)
    for address in addresses:
        if not (is_public_address(address) or (allow_loopback and is_loopback_address(address))):
            raise FetchRefused(_REFUSED_ADDRESS)
    if target.port not in ALLOWED_PORTS and not (
        allow_loopback and all(is_loopback_address(address) for address in addresses)
    ):
        raise FetchRefused("Only the standard web ports (80 and 443) are fetched.")
    return addresses


def _resolve(target: _Target, resolver, deadline: _Deadline) -> list[IPAddress]:
    # getaddrinfo cannot be interrupted, so it runs in a thread we stop waiting
    # for at the deadline (a late answer is simply dropped).
    outcome: dict = {}

    def lookup():
        try:
            outcome["infos"] = resolver(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=lookup, name="optout-fetch-dns", daemon=True)
    thread.start()
    thread.join(deadline.remaining())
    if thread.is_alive():
        raise FetchUnreachable(_TIMED_OUT)
    if "error" in outcome or not outcome.get("infos"):
        raise FetchUnreachable("The server's name could not be found.")
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in outcome["infos"]:
        try:
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise ValueError(family)
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            raise FetchRefused(_REFUSED_ADDRESS) from None
        if family == socket.AF_INET6 and sockaddr[3]:
            raise FetchRefused(_REFUSED_ADDRESS)  # a scope id: link-local by another name
        if address not in addresses:
            addresses.append(address)
    return addresses


def _fetch_once(
    target: _Target, addresses: list[IPAddress], *, deadline: _Deadline, max_bytes: int, ssl_context: ssl.SSLContext
) -> FetchResult | str:
    """The image, or the next URL when the server redirects."""
    if target.scheme == "https":
        conn = _PinnedHTTPSConnection(target.host, target.port, addresses, deadline, ssl_context)
    else:
        conn = _PinnedHTTPConnection(target.host, target.port, addresses, deadline)
    watchdog = threading.Timer(deadline.remaining(), conn.abort)
    watchdog.daemon = True
    watchdog.start()
    response = None
    try:
        logger.debug("GET %s://%s:%s%s", target.scheme, target.host, target.port, target.request_path.split("?")[0])
        conn.request(
            "GET",
            target.request_path,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "image/jpeg,image/png,image/gif,image/webp;q=0.9,*/*;q=0.1",
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
        )
        response = conn.getresponse()
        if conn.aborted:
            raise FetchUnreachable(_TIMED_OUT)
        if response.status in REDIRECT_STATUSES:
            location = (response.getheader("Location") or "").strip()
            if not location:
                raise FetchUnreachable("The server redirected without saying where to.")
            return urljoin(target.url, location)
        if response.status != 200:
            raise FetchUnreachable(f"The server answered with HTTP status {response.status}.")
        data = _read_body(response, conn, deadline, max_bytes)
        content_type = sniff_image_type(data)
        if content_type is None:
            raise NotAnImage("The address does not serve a JPEG, PNG, GIF or WebP image.")
        return FetchResult(data=data, content_type=content_type, final_url=target.url)
    except FetchError:
        raise
    except ssl.SSLCertVerificationError:
        raise FetchUnreachable("The server's certificate is not valid for this address.") from None
    except (OSError, http.client.HTTPException, zlib.error):
        if conn.aborted or deadline.expired():
            raise FetchUnreachable(_TIMED_OUT) from None
        raise FetchUnreachable("The server could not be reached, or its answer was broken.") from None
    finally:
        watchdog.cancel()
        if response is not None:
            response.close()
        conn.close()


def _read_body(response: http.client.HTTPResponse, conn: "_PinnedHTTPConnection", deadline: _Deadline, max_bytes: int):
    too_large = FetchUnreachable("The file is larger than we accept.")
    length = (response.getheader("Content-Length") or "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        decoder = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip framing, detected
    else:
        raise FetchUnreachable("The server sent the file in an encoding we do not accept.")
    data = bytearray()
    received = 0
    checked = False
    while True:
        conn.set_timeout(deadline.remaining())
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise too_large
        if decoder is not None:
            chunk = decoder.decompress(chunk, max_bytes + 1 - len(data))
        data += chunk
        if len(data) > max_bytes:
            raise too_large
        if not checked and len(data) >= 12:
            # Stop early when the first bytes already say it is no image.
            if sniff_image_type(bytes(data[:12])) is None:
                raise NotAnImage("The address does not serve a JPEG, PNG, GIF or WebP image.")
            checked = True
    if conn.aborted:
        raise FetchUnreachable(_TIMED_OUT)
    if decoder is not None:
        data += decoder.flush()
        if len(data) > max_bytes:
            raise too_large
    return bytes(data)


# --- Connections pinned to checked addresses -----------------------------------------


def _open_socket(address: IPAddress, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``address`` (already checked). Tests wrap this to watch connections."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((str(address), port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses checked beforehand; ``host`` only names the server."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress], deadline: _Deadline):
        super().__init__(host, port, timeout=deadline.remaining())
        self._addresses = addresses
        self._deadline = deadline
        self._live: socket.socket | None = None
        self.aborted = False

    def connect(self):
        self.sock = self._open()

    def _open(self) -> socket.socket:
        error: OSError = OSError("no address to connect to")
        for address in self._addresses:
            try:
                sock = _open_socket(address, self.port, self._deadline.remaining())
            except OSError as exc:
                error = exc
                continue
            self._live = sock
            return sock
        raise error

    def set_timeout(self, seconds: float) -> None:
        if self._live is not None:
            self._live.settimeout(seconds)

    def abort(self) -> None:
        """Called by the watchdog at the deadline: wake up whatever blocks on the socket."""
        self.aborted = True
        sock = self._live
        if sock is not None:
            try:
                # The plain socket method: SSLSocket.shutdown would also tear down
                # its TLS state under the feet of the thread that is reading.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, host, port, addresses, deadline, context: ssl.SSLContext):
        super().__init__(host, port, addresses, deadline)
        self._context = context

    def connect(self):
        raw = self._open()
        # The handshake runs after _live points at the TLS socket, so the
        # watchdog can also stop a handshake that drips.
        tls = self._context.wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
        self._live = tls
        self.sock = tls
        tls.do_handshake()


@functools.cache
def _default_context() -> ssl.SSLContext:
    return ssl.create_default_context()
