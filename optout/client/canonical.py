"""Canonical URLs and their SHA-256, as Google Safe Browsing defines them.

The blocklist never carries a raw URL, only ``url_sha256`` of the canonical URL,
so the server, the feed and every dataset builder must canonicalise the same
way. We follow the documented Safe Browsing v4 rules ("URLs and Hashing",
section Canonicalization), step by step:

1. strip leading and trailing spaces and control characters, remove every tab,
   CR and LF (not their escapes such as ``%0a``);
2. drop the fragment (from the first ``#``);
3. percent-unescape repeatedly until no escape is left (lenient: a ``%`` not
   followed by two hex digits stays as it is);
4. a missing scheme means ``http``; the scheme is lower-cased;
5. the host: user information and the port are dropped (the documented
   ``http://www.gotaport.com:1234/`` case), leading and trailing dots removed,
   runs of dots collapsed, a non-ASCII name converted to Punycode (IDNA 2003,
   the standard library's ``idna`` codec; a name it rejects, or whose Punycode
   would not read back as the same host (a ``%``, or a full-width ``？`` that
   Nameprep folds to ``?``), is kept as bytes and escaped), lower-cased, and
   any IPv4 form that ``inet_aton`` accepts (decimal, octal, hex, fewer than
   four parts) written as a dotted quad. A bracketed IPv6
   address is compressed, and one that embeds IPv4 (``::ffff:1.2.3.4`` or NAT64
   ``64:ff9b::1.2.3.4``) becomes that IPv4 address, as the current Safe Browsing
   reference says;
6. the path: ``.`` and ``..`` segments resolved (RFC 3986, so a final ``/..``
   counts too, as in the documented ``http://www.google.com/blah/..`` case),
   then runs of slashes collapsed; an empty path becomes ``/``. The query is
   kept as it is, ``?`` included even when empty;
7. every byte <= 0x20 or >= 0x7f, ``#`` and ``%`` is escaped as ``%XX`` with
   upper-case hex. Text is UTF-8 encoded first, so the result is always ASCII.

The function is idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``.

``BadURL`` is raised for input that cannot name a web resource: something
that is neither ``str`` nor ``bytes``, text that cannot be UTF-8 encoded
(lone surrogates), an empty URL, an empty host (``http:///x``,
``http://.../``, a protocol-relative ``//host/x``), a port that is not all
digits (which is also how ``mailto:x``, ``javascript:...`` or ``data:...``
end up rejected: without ``://`` they parse as ``host:port``), and a bracketed
host that is not an IPv6 address (zone identifiers included), and a bracket
anywhere else in the host. Any other
scheme written as ``scheme://`` is accepted: hashing is not fetching.

Speed: bulk imports call this for every row, so URLs that are already in
canonical form (lower-case host name, no escapes, no dot segments, no double
slashes, plain printable ASCII) take a regular-expression fast path that
returns the input unchanged (or without its port). A property test checks
that the fast path and the full algorithm agree.

``web_url`` is stricter, for the builder client's rows: it accepts only what
could be a picture on the web, an http(s) URL with a host name or an IP address.
A scheme other than http(s) (``javascript:alert(1)``, ``ftp://...``) and a host
that no DNS name can spell (``not a url at all`` would otherwise canonicalise
to ``http://not%20a%20url%20at%20all/``) raise ``BadURL`` saying so.

Pure standard library: the dataset builders' client imports this module.
"""

import encodings.idna  # noqa: F401  (registers the "idna" codec even when nothing else did)
import hashlib
import ipaddress
import re
from urllib.parse import unquote_to_bytes

__all__ = ["BadURL", "canonical_url", "parse_ipv4", "url_sha256", "web_url"]


class BadURL(ValueError):
    """Input that cannot be a URL (see the module docstring for what counts)."""


# Its own canonical form (the filter's vectorised fast path relies on this, and a property test checks it):
# lower-case http(s), a host name, no port, a path without "//" or "/." (no segment starts with a dot), and a
# query, of printable ASCII without '%' and '#' but for the escapes that canonicalising writes back as they were
# (_ESCAPED: upper-case hex of a byte that step 7 escapes, other than '%' itself, whose unescaping could make a new
# escape with what follows). Real URL lists are full of "%20" and UTF-8 "%E4%B8%AD": these rows need no
# per-row canonicaliser.
_ESCAPED = r"%(?:[01][0-9A-F]|2[03]|7F|[89A-F][0-9A-F])"
_SEGMENT = rf'(?:[!"$&-,\-0->@-~]|{_ESCAPED})(?:[!"$&-.0->@-~]|{_ESCAPED})*'
AS_IS = rf'https?://(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*/(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?(?:\?(?:[!"$&-~]|{_ESCAPED})*)?'

# Already canonical: lower-case http(s), a host name whose last label starts
# with a letter (so it can never parse as an IPv4 number), an optional port
# (dropped), and a path and query of printable ASCII without '%' and '#'.
# Paths with "//" or "/." are sent to the full algorithm by the caller.
_FAST = re.compile(
    r'(https?://(?:[a-z0-9-]+\.)*[a-z][a-z0-9-]*)(?::[0-9]+)?((?:/[!"$&->@-~]*)?)((?:\?[!"$&-~]*)?)',
)
_SCHEME = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://")
_DOTS = re.compile(rb"\.{2,}")
_SLASHES = re.compile(rb"/{2,}")
_DELIMITERS = re.compile(rb"[/?#@:%\\\[\]]")
_TO_ESCAPE = re.compile(rb"[\x00-\x20\x7f-\xff#%]")
_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_C0_AND_SPACE = bytes(range(0x21))


def canonical_url(url: str | bytes) -> str:
    """The Safe Browsing canonical form of ``url``; raises ``BadURL``."""
    if isinstance(url, str):
        fast = _canonical_fast(url)
        if fast is not None:
            return fast
        try:
            raw = url.encode("utf-8")
        except UnicodeEncodeError:
            raise BadURL("the URL is not valid text") from None
    elif isinstance(url, bytes | bytearray):
        raw = bytes(url)
    else:
        raise BadURL("a URL must be text")
    return _canonical_slow(raw)


_AUTHORITY = re.compile(r"[^/?#]*")


def _canonical_fast(url: str) -> str | None:
    """The canonical form of a URL that is canonical already but for a port, or for the case of its scheme and
    host name (``HTTPS://Example.COM:443/a.jpg``, as crawlers write them); None for any other.

    Lower-casing the part before the path is exactly what the full algorithm does to an ASCII host name that
    ``_FAST`` accepts (no escapes, no user, no IP address); the path keeps its case. Not for non-ASCII text,
    whose lower case can turn into ASCII (the Kelvin sign into "k").
    """
    match = _FAST.fullmatch(url)
    if match is None and url.isascii():
        scheme, separator, rest = url.partition("://")
        if separator:
            end = _AUTHORITY.match(rest).end()
            url = f"{scheme.lower()}://{rest[:end].lower()}{rest[end:]}"
            match = _FAST.fullmatch(url)
    if match is None:
        return None
    origin, path, query = match.groups()
    if "//" in path or "/." in path:
        return None
    if len(origin) + len(path) + len(query) == len(url) and path:
        return url
    return origin + (path or "/") + query


# A scheme written out: letters then ":", unless what follows is a port (``example.com:8080/x``).
_WRITTEN_SCHEME = re.compile(r"[\x00-\x20]*([A-Za-z][A-Za-z0-9+.-]*):(?![0-9]*(?:[/?#]|$))")
_WEB = re.compile(r"https?://(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(?:[/?].*)?", re.DOTALL)


def web_url(url: str | bytes) -> str:
    """The canonical form of ``url`` when it can name a picture on the web (http or https, a real host).

    Raises ``BadURL`` otherwise, saying what is wrong.
    """
    text = url.decode("utf-8", "replace") if isinstance(url, bytes | bytearray) else url
    if isinstance(text, str):
        written = _WRITTEN_SCHEME.match(text)
        if written is not None and written[1].lower() not in ("http", "https"):
            raise BadURL(f"the scheme is {written[1]!r}, not http(s)")
    canonical = canonical_url(url)
    if not canonical.startswith(("http://", "https://")):
        raise BadURL(f"the scheme is {canonical.partition(':')[0]!r}, not http(s)")
    if not _WEB.fullmatch(canonical):
        raise BadURL("the host is not a host name or an IP address")
    return canonical


def url_sha256(url: str | bytes) -> str:
    """Hex SHA-256 of the UTF-8 canonical URL (the blocklist's ``url_sha256``); raises ``BadURL``."""
    return hashlib.sha256(canonical_url(url).encode("ascii")).hexdigest()


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``host`` spells under ``inet_aton`` rules, or None.

    One to four dot-separated parts, each decimal, octal (leading ``0``) or hex
    (``0x``); the last part fills the remaining bytes, so ``127.1``,
    ``2130706433``, ``0x7f000001`` and ``0177.0.0.1`` all mean 127.0.0.1.
    """
    parts = host.split(".")
    if len(parts) > 4:
        return None
    values = []
    for part in parts:
        if len(part) > 40 or not _IPV4_PART.fullmatch(part):
            return None
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _canonical_slow(raw: bytes) -> str:
    raw = raw.strip(_C0_AND_SPACE).translate(None, b"\t\r\n")
    raw = raw.partition(b"#")[0]
    raw = _unescape(raw)
    if not raw:
        raise BadURL("the URL is empty")
    scheme_match = _SCHEME.match(raw)
    if scheme_match:
        scheme = scheme_match[1].lower()
        rest = raw[scheme_match.end() :]
    else:
        scheme = b"http"
        rest = raw
    rest, question_mark, query = rest.partition(b"?")
    authority, slash, path = rest.partition(b"/")
    host = _canonical_host(authority)
    path = _canonical_path(b"/" + path)
    out = scheme + b"://" + _escape(host) + _escape(path)
    if question_mark:
        out += b"?" + _escape(query)
    return out.decode("ascii")


def _unescape(raw: bytes) -> bytes:
    """Percent-unescape until nothing changes.

    Escapes ("%XY", X and Y hex) never overlap, so the result does not depend on
    the order of replacements: a few whole-string passes settle typical URLs,
    and a one-pass stack settles pathological nesting (``%25252525...``) in
    linear time.
    """
    for _ in range(4):
        if b"%" not in raw:
            return raw
        unescaped = unquote_to_bytes(raw)
        if unescaped == raw:
            return raw
        raw = unescaped
    out = bytearray()
    for byte in raw:
        out.append(byte)
        while len(out) >= 3 and out[-3] == 0x25 and out[-2] in _HEX_DIGITS and out[-1] in _HEX_DIGITS:
            value = int(out[-2:], 16)
            del out[-3:]
            out.append(value)
    return bytes(out)


def _canonical_host(authority: bytes) -> bytes:
    host = authority.rpartition(b"@")[2]
    if host.startswith(b"["):
        literal, bracket, after = host[1:].partition(b"]")
        if not bracket or (after and not _is_port(after)):
            raise BadURL("the host is not a valid IPv6 address")
        try:
            address = ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            raise BadURL("the host is not a valid IPv6 address") from None
        if address.scope_id:
            raise BadURL("the host is not a valid IPv6 address")
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped).encode()
        if address in _NAT64:
            return str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)).encode()
        return b"[" + address.compressed.encode() + b"]"
    host, colon, port = host.partition(b":")
    if colon and not _is_port(colon + port):
        raise BadURL("the port is not a number")
    host = _DOTS.sub(b".", host.strip(b"."))
    # A name is converted by IDNA only when what it gives reads back as the same host. A literal "%" stays among
    # Punycode's letters and can make a new escape ("%1⁄4" -> "xn--%14-pt0a"), and Nameprep folds full-width forms
    # to ASCII, so "？" would become a "?" that ends the host. Such names keep their bytes, which get escaped.
    if not host.isascii():
        try:
            name = host.decode("utf-8").encode("idna")
        except UnicodeError:
            name = None  # not a name IDNA accepts
        if name is not None and not _DELIMITERS.search(name):
            host = _DOTS.sub(b".", name.strip(b"."))
    if not host:
        raise BadURL("the URL has no host")
    if b"[" in host or b"]" in host:
        # Only a whole IPv6 literal may hold brackets (".[" would become "[", which then reads as a broken literal).
        raise BadURL("the host has a bracket outside an IPv6 address")
    host = host.lower()
    if host[:1].isdigit():
        address = parse_ipv4(host.decode("latin-1"))
        if address is not None:
            return str(address).encode()
    return host


def _is_port(text: bytes) -> bool:
    """``:`` followed by digits or nothing (an empty port means the default)."""
    return text[:1] == b":" and (len(text) == 1 or text[1:].isdigit())


def _canonical_path(path: bytes) -> bytes:
    segments = path.split(b"/")[1:]
    out: list[bytes] = []
    for segment in segments:
        if segment == b"..":
            if out:
                out.pop()
        elif segment != b".":
            out.append(segment)
    if segments[-1] in (b".", b".."):
        out.append(b"")  # "/a/b/.." names the directory "/a/"
    return _SLASHES.sub(b"/", b"/" + b"/".join(out))


def _escape(data: bytes) -> bytes:
    return _TO_ESCAPE.sub(lambda match: b"%%%02X" % match[0][0], data)
