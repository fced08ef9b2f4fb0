"""Abuse limits of the requester side, on optout's fixed-window counters.

Clients are counted by a keyed hash of their address, never the address itself
(``optout.feed.throttling.client_key``: an HMAC over the IPv4 address or the IPv6 /64).
``hit(limit, ident)`` returns 0 when the attempt is allowed, else the seconds to wait.
"""

from optout.feed.throttling import Limit, client_key, hit
from requests_app import cases

__all__ = ["Limit", "client_key", "hit", "case_key"]


# Per client address. Status checks are cheap for us but let a stranger guess
# secrets, so they are limited per case too.
CREATE_PER_CLIENT = Limit("create", 10, 3600)
LOOKUP_PER_CLIENT = Limit("lookup", 30, 600)
LOOKUP_PER_CASE = Limit("lookup-case", 20, 3600)

LIMITED_MESSAGE = "Too many attempts from your connection. Please wait a while and try again."


def case_key(case: str) -> str:
    """The per-case counter's key: the normalised reference, so spelling a case differently
    (lower case, spaces, O for 0) does not buy another round of guesses."""
    return cases.normalise_case_reference(case) or case.strip().upper()
