"""Which URLs and addresses may be fetched: the parsed target, the address rule, DNS under the deadline.

See the package's ``fetcher`` module for the rules in prose; ``is_public_address`` is the address rule.
"""

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

from optout.client.canonical import parse_ipv4
from optout.fetch.errors import REFUSED_ADDRESS, TIMED_OUT, Deadline, FetchRefused, FetchUnreachable

ALLOWED_PORTS = frozenset({80, 443})
MAX_FETCH_URL_LENGTH = 8192  # redirect targets included: longer than any URL we take in or index
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


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # ASCII: a Punycode name or an IP address without brackets
    address: IPAddress | None  # set when the host is an IP literal
    port: int
    request_path: str


def parse_target(url: str, *, allow_loopback: bool) -> Target:
    if not isinstance(url, str) or len(url) > MAX_FETCH_URL_LENGTH or _CONTROL.search(url):
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
    return Target(url=url, scheme=scheme, host=host, address=address, port=port, request_path=request_path)


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


def checked_addresses(target: Target, resolver, deadline: Deadline, *, allow_loopback: bool) -> list[IPAddress]:
    """Every address of the target, all checked; the only addresses we may connect to."""
    addresses = [target.address] if target.address is not None else _resolve(target, resolver, deadline)
    for address in addresses:
        if not (is_public_address(address) or (allow_loopback and is_loopback_address(address))):
            raise FetchRefused(REFUSED_ADDRESS)
    if target.port not in ALLOWED_PORTS and not (
        allow_loopback and all(is_loopback_address(address) for address in addresses)
    ):
        raise FetchRefused("Only the standard web ports (80 and 443) are fetched.")
    return addresses


def refusal_without_dns(url: str, *, allow_loopback: bool) -> str:
    """Why ``url`` would be refused whatever DNS says (scheme, port, user name, an address literal or a
    ``localhost`` name that is not public), in words safe to show; empty when only a fetch can tell.

    The intake calls it to refuse such links at once instead of filing a case nobody can check; the
    fetch itself still checks every resolved address.
    """
    try:
        target = parse_target(url, allow_loopback=allow_loopback)
        name = target.host.lower().rstrip(".")
        if target.address is None and (name == "localhost" or name.endswith(".localhost")):
            # RFC 6761: these names are loopback, whatever a resolver answers.
            target = replace(target, address=ipaddress.IPv4Address("127.0.0.1"))
        if target.address is not None:
            checked_addresses(target, None, None, allow_loopback=allow_loopback)
    except FetchRefused as exc:
        return exc.message
    return ""


def _resolve(target: Target, resolver, deadline: Deadline) -> list[IPAddress]:
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
        raise FetchUnreachable(TIMED_OUT)
    if "error" in outcome or not outcome.get("infos"):
        raise FetchUnreachable("The server's name could not be found.")
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in outcome["infos"]:
        try:
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise ValueError(family)
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            raise FetchRefused(REFUSED_ADDRESS) from None
        if family == socket.AF_INET6 and sockaddr[3]:
            raise FetchRefused(REFUSED_ADDRESS)  # a scope id: link-local by another name
        if address not in addresses:
            addresses.append(address)
    return addresses
