"""Fixed-window request counters in the shared cache: the feed, the lookup API, and (through
requests_app/limits.py) the requester side and the staff login.

Clients are counted by a keyed hash of their IPv4 address or IPv6 /64, never
the address itself (one household or host usually owns a whole /64), and
nothing outlives the window.
"""

import hashlib
import hmac
import ipaddress
import time

from django.conf import settings
from django.core.cache import cache


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
    key = hashlib.sha256(b"optout.client-key" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, network.encode(), hashlib.sha256).hexdigest()[:32]


def hit(scope: str, ident: str, *, count: int, seconds: int) -> int:
    """Count one request; returns 0 if it is within the limit, else the seconds until the window ends."""
    now = time.time()
    window = int(now // seconds)
    key = f"optout-limit:{scope}:{ident}:{window}"
    cache.add(key, 0, timeout=seconds + 5)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=seconds + 5)
        used = 1
    return 0 if used <= count else max(1, int((window + 1) * seconds - now))
