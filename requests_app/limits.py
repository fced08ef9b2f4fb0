"""Abuse limits of the requester side, on optout's fixed-window counters.

Clients are counted by a keyed hash of their address, never the address itself
(``optout.feed.throttling.client_key``: an HMAC over the IPv4 address or the IPv6 /64).
``hit(limit, ident)`` returns 0 when the attempt is allowed, else the seconds to wait;
``waiting(limit, ident)`` says the same without counting. Creating a case counts only accepted
requests (a form sent back for a typo costs nothing); status lookups count every attempt, since
each one is a guess at a secret.
"""

import math

from optout.feed.throttling import Limit, client_key, hit, waiting
from requests_app import cases

__all__ = ["Limit", "client_key", "hit", "waiting", "case_key", "limited_message"]


# Per client address. Status checks are cheap for us but let a stranger guess
# secrets, so they are limited per case too.
CREATE_PER_CLIENT = Limit("create", 10, 3600)
LOOKUP_PER_CLIENT = Limit("lookup", 30, 600)
LOOKUP_PER_CASE = Limit("lookup-case", 20, 3600)


def limited_message(seconds: int) -> str:
    """The refusal in words, with the wait that Retry-After gives in seconds."""
    minutes = max(1, math.ceil(seconds / 60))
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"Too many attempts from your connection. Please try again in {wait}."


def case_key(case: str) -> str:
    """The per-case counter's key: the normalised reference, so spelling a case differently
    (lower case, spaces, O for 0) does not buy another round of guesses."""
    return cases.normalise_case_reference(case) or case.strip().upper()
