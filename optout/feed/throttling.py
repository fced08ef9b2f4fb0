"""Fixed-window request counters in the shared cache: the feed, the lookup API, and (through
requests_app/limits.py) the requester side and the staff login.

Clients are counted by a keyed hash of their IPv4 address or IPv6 /64, never
the address itself (one household or host usually owns a whole /64); limits that a
site could dodge by hopping /64s also count the /48 around them (``network_key``).
Nothing outlives the window.
"""

import ipaddress
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac


@dataclass(frozen=True)
class Limit:
    """At most ``count`` requests per ``seconds``-long window, counted under ``scope``."""

    scope: str
    count: int
    seconds: int


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or behind ``DJANGO_TRUSTED_PROXY_HOPS`` proxies the address
    the outermost of them put into ``X-Forwarded-For``.

    Each proxy appends the address it saw, so the client's is that many entries from the end; anything
    before it is whatever the client sent and is never trusted. A request with fewer entries did not pass
    through every proxy, and is counted under the address that connected.
    """
    hops = settings.DJANGO_TRUSTED_PROXY_HOPS
    if hops:
        entries = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        entries = [entry for entry in entries if entry]
        if len(entries) >= hops:
            return entries[-hops]
    return request.META.get("REMOTE_ADDR", "")


def _networks(request) -> list[str]:
    """The networks a client is counted in: its IPv4 address; or its IPv6 /64 and the /48 around it."""
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return ["unknown"]
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return [str(mapped)]
    if address.version == 6:
        return [str(ipaddress.ip_network(f"{address}/{prefix}", strict=False)) for prefix in (64, 48)]
    return [str(address)]


def _key(network: str) -> str:
    # A counter key lives one window: no fallback keys needed when SECRET_KEY rotates.
    return salted_hmac("optout.client-key", network, algorithm="sha256").hexdigest()[:32]


def client_key(request) -> str:
    """The keyed hash of the client's IPv4 address or IPv6 /64."""
    return _key(_networks(request)[0])


def network_key(request) -> str | None:
    """The keyed hash of an IPv6 client's /48 (one site's many /64s), or None for IPv4."""
    networks = _networks(request)
    return _key(networks[1]) if len(networks) > 1 else None


def _window(limit: Limit, ident: str) -> tuple[str, int]:
    """The counter's key for the current window, and the seconds until that window ends."""
    now = time.time()
    window = int(now // limit.seconds)
    return f"optout-limit:{limit.scope}:{ident}:{window}", max(1, int((window + 1) * limit.seconds - now))


def hit(limit: Limit, ident: str) -> int:
    """Count one request of ``ident``. Returns 0 when it is within the limit, else the seconds to wait
    (for ``Retry-After``): callers refuse when the result is not 0."""
    key, remaining = _window(limit, ident)
    cache.add(key, 0, timeout=limit.seconds + 5)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=limit.seconds + 5)
        used = 1
    return 0 if used <= limit.count else remaining


def waiting(limit: Limit, ident: str) -> int:
    """The seconds to wait if ``ident`` has used up ``limit`` in this window, else 0; counts nothing.

    For limits that count only accepted requests: refuse early with ``waiting``, do the work, then
    ``hit`` once the request is accepted (refusing it if a concurrent one took the last place).
    """
    key, remaining = _window(limit, ident)
    return remaining if (cache.get(key) or 0) >= limit.count else 0
