"""The one SSRF-safe fetcher: everything fetched because a stranger typed a URL goes through ``fetch_image``.

It owns the address policy (``policy``: which URLs, ports and resolved addresses may be fetched),
connections pinned to the addresses it checked (``connection``), the fetch itself with its redirects,
deadline, byte cap and image check (``fetcher``), and its errors (``errors``). No Django: callers pass
the settings as arguments. It may import ``optout.client.canonical`` (the shared IPv4 reader) and nothing
else of optout.
"""

from optout.fetch.errors import FetchError, FetchRefused, FetchUnreachable, NotAnImage
from optout.fetch.fetcher import USER_AGENT, FetchResult, fetch_image, sniff_image_type
from optout.fetch.policy import MAX_FETCH_URL_LENGTH, is_loopback_address, is_public_address, refusal_without_dns

__all__ = [
    "MAX_FETCH_URL_LENGTH",
    "USER_AGENT",
    "FetchError",
    "FetchRefused",
    "FetchResult",
    "FetchUnreachable",
    "NotAnImage",
    "fetch_image",
    "is_loopback_address",
    "is_public_address",
    "refusal_without_dns",
    "sniff_image_type",
]
