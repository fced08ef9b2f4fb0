"""HTTP(S) connections pinned to addresses checked beforehand: no second resolution, no rebinding window.

The ``Host`` header and TLS (SNI and certificate verification) use the host name; the socket goes to
the exact address the policy checked. ``abort`` lets a watchdog wake a blocked read at the deadline.
"""

import functools
import http.client
import socket
import ssl

from optout.fetch.errors import Deadline
from optout.fetch.policy import IPAddress


def open_socket(address: IPAddress, port: int, timeout: float) -> socket.socket:
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


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses checked beforehand; ``host`` only names the server."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress], deadline: Deadline):
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
                sock = open_socket(address, self.port, self._deadline.remaining())
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


class PinnedHTTPSConnection(PinnedHTTPConnection):
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
def default_context() -> ssl.SSLContext:
    return ssl.create_default_context()
