"""Builders for the client's tests: a loaded blocklist straight from values, for tests that need no feed."""

import hashlib

from optout.client import state
from optout.client.canonical import web_url


def make_blocklist(*, urls=(), images=(), phashes=(), pdqs=()) -> state.Blocklist:
    """A loaded blocklist as ``state.load`` returns it, straight from values (no feed, no disk)."""
    keys = sorted({hashlib.sha256(web_url(url).encode("ascii")).digest() for url in urls})
    current = state.Current(
        generation="v000001-x",
        feed_url="http://feed.invalid/",
        feed="test-partner",
        tier="partner",
        version=1,
        manifest_sha256="ab" * 32,
        created="",
        expires="",
        accepted_at="",
        entries=len(keys),
        state_sha256=state.state_sha256(b"".join(keys)),
        key_id="",
        public_key="",
    )
    return state.Blocklist(
        current=current,
        manifest={"version": 1},
        url_bytes=b"".join(keys),
        sha256_bytes=b"".join(sorted({bytes.fromhex(image) for image in images})),
        phash_bytes=b"".join(value.to_bytes(8, "little") for value in sorted(set(phashes))),
        pdq_bytes=b"".join(sorted({value.to_bytes(32, "big") for value in pdqs})),
        expired=False,
    )
