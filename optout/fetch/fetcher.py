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

import http.client
import logging
import socket
import ssl
import threading
import zlib
from dataclasses import dataclass
from urllib.parse import urljoin

from optout.fetch.connection import PinnedHTTPConnection, PinnedHTTPSConnection, default_context
from optout.fetch.errors import TIMED_OUT, Deadline, FetchError, FetchUnreachable, NotAnImage
from optout.fetch.policy import IPAddress, Target, checked_addresses, parse_target

logger = logging.getLogger(__name__)

USER_AGENT = "optout-fetcher/1 (checks removal requests for AI training data; one request per URL)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


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
    deadline = Deadline(timeout)
    current = url
    target = None
    try:
        for _hop in range(max_redirects + 1):
            target = parse_target(current, allow_loopback=allow_loopback)
            addresses = checked_addresses(target, resolver, deadline, allow_loopback=allow_loopback)
            result = _fetch_once(
                target, addresses, deadline=deadline, max_bytes=max_bytes, ssl_context=ssl_context or default_context()
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


def _fetch_once(
    target: Target, addresses: list[IPAddress], *, deadline: Deadline, max_bytes: int, ssl_context: ssl.SSLContext
) -> FetchResult | str:
    """The image, or the next URL when the server redirects."""
    if target.scheme == "https":
        conn = PinnedHTTPSConnection(target.host, target.port, addresses, deadline, ssl_context)
    else:
        conn = PinnedHTTPConnection(target.host, target.port, addresses, deadline)
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
            raise FetchUnreachable(TIMED_OUT)
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
            raise FetchUnreachable(TIMED_OUT) from None
        raise FetchUnreachable("The server could not be reached, or its answer was broken.") from None
    finally:
        watchdog.cancel()
        if response is not None:
            response.close()
        conn.close()


def _read_body(response: http.client.HTTPResponse, conn: "PinnedHTTPConnection", deadline: Deadline, max_bytes: int):
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
        raise FetchUnreachable(TIMED_OUT)
    if decoder is not None:
        data += decoder.flush()
        if len(data) > max_bytes:
            raise too_large
    return bytes(data)
