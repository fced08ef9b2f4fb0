"""Abuse limits: fixed-window counters in the shared cache.

Clients are counted by a keyed hash of their address, never the address itself:
an HMAC under a key derived from SECRET_KEY, over the IPv4 address or the IPv6
/64 prefix (one household or host usually owns a whole /64). Nothing here is
stored beyond the window.
"""

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Limit:
    scope: str
    count: int
    seconds: int


# Per client address. Status checks are cheap for us but let a stranger guess
# secrets, so they are limited per case too.
CREATE_PER_CLIENT = Limit("create", 10, 3600)
LOOKUP_PER_CLIENT = Limit("lookup", 30, 600)
LOOKUP_PER_CASE = Limit("lookup-case", 20, 3600)

LIMITED_MESSAGE = "Too many attempts from your connection. Please wait a while and try again."


def client_address(request) -> str:
    if settings.DJANGO_BEHIND_PROXY:
        # The proxy appends the address it saw; anything before it is client-supplied.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def client_key(request) -> str:
    raw = client_address(request)
    try:
        address = ipaddress.ip_address(raw)
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
    key = hashlib.sha256(b"requests_app.client-key" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, network.encode(), hashlib.sha256).hexdigest()[:32]


def hit(limit: Limit, ident: str) -> bool:
    """Count one attempt. True if it is within the limit, False if it must be refused."""
    window = int(time.time() // limit.seconds)
    key = f"limit:{limit.scope}:{ident}:{window}"
    cache.add(key, 0, timeout=limit.seconds + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=limit.seconds + 5)
        count = 1
    return count <= limit.count
