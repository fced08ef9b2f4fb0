"""Abuse limits of the requester side, on optout's fixed-window counters.

Clients are counted by a keyed hash of their address, never the address itself
(``optout.feed.throttling.client_key``: an HMAC over the IPv4 address or the IPv6 /64).
``hit(limit, ident)`` returns 0 when the attempt is allowed, else the seconds to wait;
``waiting(limit, ident)`` says the same without counting. Creating a case counts only accepted
requests (a form sent back for a typo costs nothing); status lookups count every attempt, since
each one is a guess at a secret.
"""

import math

from django.conf import settings

from optout.feed.throttling import Limit, client_key, hit, network_key, waiting
from requests_app import cases

__all__ = [
    "Limit",
    "case_key",
    "client_key",
    "creation_hit",
    "creation_waiting",
    "hit",
    "limited_message",
    "waiting",
]


# Per client address. Status checks are cheap for us but let a stranger guess
# secrets, so they are limited per case too.
CREATE_PER_CLIENT = Limit("create", 10, 3600)
# An IPv6 site owns a /48: 65,536 /64s, each a fresh client. Its /64s share this.
CREATE_PER_NETWORK = Limit("create-48", 30, 3600)
LOOKUP_PER_CLIENT = Limit("lookup", 30, 600)
LOOKUP_PER_CASE = Limit("lookup-case", 20, 3600)


def limited_message(seconds: int) -> str:
    """The refusal in words, with the wait that Retry-After gives in seconds."""
    minutes = max(1, math.ceil(seconds / 60))
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"Too many attempts from your connection. Please try again in {wait}."


def case_key(case: str, request) -> str:
    """The per-case counter's key: the normalised reference (spelling a case differently, in lower case
    or with O for 0, buys no extra guesses) together with the client. A stranger who knows a case
    reference only uses up their own guesses, never the owner's; guessing stays infeasible all the same,
    since a secret has 200 random bits and every client is limited across all cases too."""
    reference = cases.normalise_case_reference(case) or case.strip().upper()
    return f"{reference}:{client_key(request)}"


def _creation_limits(request) -> list[tuple[Limit, str]]:
    checks = [(CREATE_PER_CLIENT, client_key(request))]
    if network := network_key(request):
        checks.append((CREATE_PER_NETWORK, network))
    checks.append((Limit("create-all", settings.OPTOUT_MAX_NEW_REQUESTS_PER_HOUR, 3600), "everyone"))
    return checks


def creation_waiting(request) -> int:
    """Seconds to wait before this client may file a new request (its address or /64, its IPv6 /48, and
    everyone together, ``OPTOUT_MAX_NEW_REQUESTS_PER_HOUR``), 0 when it may; counts nothing."""
    return max(waiting(limit, ident) for limit, ident in _creation_limits(request))


def creation_hit(request) -> int:
    """Count one accepted request against every creation limit; the seconds to wait if one is used up."""
    return max([hit(limit, ident) for limit, ident in _creation_limits(request)])
