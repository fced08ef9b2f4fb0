"""Fixed-window request counters in the shared cache: the feed, the lookup API, and (through
requests_app/limits.py) the requester side and the staff login.

Clients are counted by a keyed hash of their IPv4 address or IPv6 /64, never
the address itself (one household or host usually owns a whole /64), and
nothing outlives the window.
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
    if settings.DJANGO_BEHIND_PROXY:
        # The proxy appends the address it saw; anything before it is client-supplied.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def client_key(request) -> str:
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        network = "unknown"
    else:
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            network = str(mapped)
        elif address.version == 6:
            network = str(ipaddress.ip_network(f"{address}/64", strict=False))
        else:
            network = str(address)
    # A counter key lives one window: no fallback keys needed when SECRET_KEY rotates.
    return salted_hmac("optout.client-key", network, algorithm="sha256").hexdigest()[:32]


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
