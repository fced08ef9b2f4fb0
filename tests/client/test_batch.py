"""The filter's core over Arrow batches: the fast path equals the per-row reference, row for row; the
near-duplicate index equals a linear scan; the rules stay pinned to the release they were built from."""

import hashlib
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optout.client import batch, nearby
from optout.client.canonical import AS_IS, BadURL, canonical_url, web_url
from tests.client.blocklists import make_blocklist
from tests.client.test_canonical import MORE_CASES, SAFE_BROWSING_CASES

# Real-world shapes: CDN paths, query strings, upper case, ports, dot segments, escapes, junk.
_host = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z0-9-]{1,8}){0,3}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9.%_ -]{1,12}", fullmatch=True),
    st.sampled_from(["127.0.0.1", "0x7f.1", "[::1]", "bücher.de", "a..b.", "user@host", "i.pinimg.com"]),
)
_path = st.one_of(
    st.text(alphabet="/.abcAZ09%25#?&=;~ \t+@:ü\\", max_size=24),
    st.from_regex(r"(/[a-z0-9_-]{1,10}){1,4}\.(jpg|png|webp)(\?w=[0-9]{1,4})?", fullmatch=True),
)
_url = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "HTTP://", "", "ftp://", "javascript:", "data:"]),
    _host,
    st.sampled_from(["", ":80", ":", ":8080"]),
    _path,
)
AS_IS_FULL = f"^{AS_IS}$"


def blockable(urls):
    out = []
    for url in urls:
        try:
            web_url(url)
        except BadURL:
            continue
        out.append(url)
    return out


def assert_same(blocklist, table, columns, **distances):
    rules = batch.Rules(blocklist, **distances)
    record = table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
    fast, _ = rules.keep(record, columns)
    reference = batch.reference_keep(blocklist, record, columns, **distances)
    assert fast.tolist() == reference.tolist()
    return fast


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    urls=st.lists(_url, min_size=1, max_size=40),
    chosen=st.data(),
)
@example(urls=["not a url at all", "javascript:alert(1)", "https://a.example/x.jpg"], chosen=None)
def test_the_fast_path_equals_the_per_row_reference(urls, chosen):
    candidates = blockable(urls)
    blocked = (
        chosen.draw(st.lists(st.sampled_from(candidates), max_size=5)) if chosen and candidates else candidates[:1]
    )
    images = [hashlib.sha256(url.encode()).hexdigest() for url in urls]
    spelled = [image.upper() if i % 3 == 0 else image for i, image in enumerate(images)]
    spelled = [value if i % 5 != 4 else "not hex" for i, value in enumerate(spelled)]
    blocklist = make_blocklist(urls=blocked, images=images[1::2])
    table = pa.table({"url": urls, "sha256": spelled})
    fast = assert_same(blocklist, table, batch.Columns(url="url", sha256="sha256"))
    # Every blocked spelling goes, for one reason or another.
    assert all(fast[i] != batch.KEPT for i, url in enumerate(urls) if url in blocked)


@pytest.mark.parametrize("cases", [SAFE_BROWSING_CASES, MORE_CASES], ids=["safe-browsing", "more"])
def test_the_fast_path_equals_the_reference_on_the_canonicalisation_vectors(cases):
    urls = [url.decode("latin-1") if isinstance(url, bytes) else url for url, _ in cases]
    expected = [expected for _, expected in cases]
    blocklist = make_blocklist(urls=blockable(expected[::2]))
    fast = assert_same(blocklist, pa.table({"url": urls + expected}), batch.Columns())
    assert (fast == 1).any()


def test_escaped_urls_judged_as_they_are_equal_the_reference():
    # Escapes canonicalising writes back unchanged take the fast path; the others (lower-case hex, "%25", an
    # escaped dot, slash or letter) must reach the same digest through the canonicaliser.
    urls = [
        "https://a.example/photo%20one.jpg",
        "https://a.example/%E4%B8%AD%E6%96%87.png?q=%23tag",
        "https://a.example/x%7F%00%1F.jpg",
        "https://a.example/%e4%b8%ad%e6%96%87.png?q=%23tag",  # the same as the second
        "https://a.example/100%25.jpg",
        "https://a.example/%2541.jpg",  # %41, then A: https://a.example/A.jpg
        "https://a.example/a/%2E%2E/b.jpg",  # https://a.example/b.jpg
        "https://a.example/a%2Fb%41.jpg",  # https://a.example/a/bA.jpg
    ]
    as_is = [re.fullmatch(AS_IS, url) is not None for url in urls]
    assert as_is == [True, True, True, False, False, False, False, False]
    blocklist = make_blocklist(urls=[urls[1], "https://a.example/A.jpg", "https://a.example/b.jpg"])
    fast = assert_same(blocklist, pa.table({"url": urls}), batch.Columns())
    assert fast.tolist() == [batch.KEPT, 1, batch.KEPT, 1, batch.KEPT, 1, 1, batch.KEPT]


def test_nulls_and_large_strings_are_judged_too():
    blocklist = make_blocklist(urls=["https://a.example/x.jpg"])
    table = pa.table({"url": pa.array(["https://a.example/x.jpg", None, "https://b.example/y"], pa.large_string())})
    fast = assert_same(blocklist, table, batch.Columns())
    assert fast.tolist() == [1, 0, batch.KEPT]


# Hex cells as real files spell them, and the cases the one-unhexlify fast path must hand back: a cell of exactly
# the right length that is not all hex (the whole batch then goes through the trimmed match), padded cells (longer),
# short and empty ones, nulls.
def _hex_cell(digits: int):
    value = st.binary(min_size=digits // 2, max_size=digits // 2).map(bytes.hex)
    return st.one_of(
        value,
        value.map(str.upper),
        st.tuples(st.sampled_from(" \t\r\n"), value, st.sampled_from(["", " ", "\n"])).map("".join),
        value.map(lambda v: v[:-1] + "g"),
        value.map(lambda v: v[:-1] + " "),
        value.map(lambda v: "ü" + v[2:]),
        value.map(lambda v: v[:-1]),
        st.sampled_from(["", "not hex"]),
        st.none(),
    )


@settings(max_examples=100, deadline=None)
@given(
    images=st.lists(_hex_cell(64), min_size=1, max_size=30),
    phashes=st.lists(_hex_cell(16), min_size=30, max_size=30),
    data=st.data(),
)
def test_hex_spellings_match_the_reference(images, phashes, data):
    rows = len(images)
    blocked_images = [
        v.strip() for v in images if v and len(v.strip()) == 64 and not set(v.strip()) - set("0123456789abcdefABCDEF")
    ]
    blocked_images = data.draw(st.lists(st.sampled_from(blocked_images), max_size=5)) if blocked_images else []
    near = [
        int(v.strip(), 16)
        for v in phashes
        if v and len(v.strip()) == 16 and not set(v.strip()) - set("0123456789abcdefABCDEF")
    ]
    blocklist = make_blocklist(images=[v.lower() for v in blocked_images], phashes=near[:3])
    table = pa.table(
        {"url": [f"https://cdn.example/{i}.jpg" for i in range(rows)], "sha256": images, "phash": phashes[:rows]}
    )
    fast = assert_same(
        blocklist, table, batch.Columns(sha256="sha256", phash="phash"), max_distance=data.draw(st.integers(0, 4))
    )
    assert all(
        fast[i] != batch.KEPT for i, value in enumerate(images) if value is not None and value.strip() in blocked_images
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_phash_and_pdq_columns_match_the_reference(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    phashes = [int(v) for v in rng.integers(0, 2**63, size=20, dtype=np.uint64) * 2 + 1]
    pdqs = [int.from_bytes(rng.bytes(32), "big") for _ in range(10)]
    rows = 30
    query_phash, query_pdq = [], []
    for i in range(rows):
        near = phashes[i % len(phashes)] ^ sum(
            1 << int(b) for b in rng.choice(64, size=int(rng.integers(0, 12)), replace=False)
        )
        value = near if i % 2 else int(rng.integers(0, 2**63))
        query_phash.append(
            [f"{value:016x}", f"{value:016X} ", value - (1 << 64) if value >= 1 << 63 else value, None, "xyz"][i % 5]
        )
        base = pdqs[i % len(pdqs)] ^ sum(
            1 << int(b) for b in rng.choice(256, size=int(rng.integers(0, 40)), replace=False)
        )
        query_pdq.append(f"{base:064x}" if i % 4 else None)
    urls = [f"https://cdn.example/{i}.jpg" for i in range(rows)]
    blocklist = make_blocklist(urls=urls[:2], phashes=phashes, pdqs=pdqs)
    distance = data.draw(st.integers(0, 10))
    pdq_distance = data.draw(st.integers(0, 40))
    strings = [value if not isinstance(value, int) else f"{value & (2**64 - 1):016x}" for value in query_phash]
    for phash_column in (
        pa.array(strings),
        pa.array([v if isinstance(v, int) else None for v in query_phash], pa.int64()),
    ):
        table = pa.table({"url": urls, "phash": phash_column, "pdq": query_pdq})
        assert_same(
            blocklist,
            table,
            batch.Columns(phash="phash", pdq="pdq"),
            max_distance=distance,
            max_pdq_distance=pdq_distance,
        )


@pytest.mark.parametrize(("bits", "radius"), [(64, 0), (64, 3), (64, 8), (64, 12), (256, 8), (256, 31)])
def test_the_near_duplicate_index_equals_a_linear_scan(bits, radius):
    rng = np.random.default_rng(bits * 100 + radius)
    words = bits // 64
    blocked = rng.integers(0, 2**64 - 1, size=(3000, words), dtype=np.uint64, endpoint=True)
    queries = blocked[rng.integers(0, len(blocked), size=600)].copy()
    for row in range(len(queries)):  # planted near and far neighbours, around the radius
        for bit in rng.choice(bits, size=int(rng.integers(0, 2 * radius + 3)), replace=False):
            queries[row, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    queries = np.vstack([queries, rng.integers(0, 2**64 - 1, size=(200, words), dtype=np.uint64, endpoint=True)])
    index = nearby.PHashIndex(blocked[:, 0], radius) if bits == 64 else nearby.PDQIndex(blocked, radius)
    found = index.near(queries[:, 0] if bits == 64 else queries)
    expected = nearby.linear_near(blocked, queries, radius)
    assert found.tolist() == expected.tolist()
    assert 0 < expected.sum() < len(queries)


@pytest.mark.parametrize(("bits", "radius"), [(64, 8), (256, 31)])
def test_the_near_duplicate_index_equals_a_linear_scan_on_crowded_chunks(bits, radius):
    """Blocked hashes that share most of their bits: buckets of many hashes, beyond the table's inline layers."""
    rng = np.random.default_rng(bits + radius)
    words = bits // 64
    base = rng.integers(0, 2**64 - 1, size=(1, words), dtype=np.uint64, endpoint=True)
    blocked = np.repeat(base, 2000, axis=0)
    blocked[:, -1] ^= rng.integers(0, 1 << 12, size=2000, dtype=np.uint64)  # only the last 12 bits differ
    blocked = np.vstack([blocked, rng.integers(0, 2**64 - 1, size=(2000, words), dtype=np.uint64, endpoint=True)])
    queries = blocked[rng.integers(0, len(blocked), size=400)].copy()
    for row in range(len(queries)):
        for bit in rng.choice(bits, size=int(rng.integers(0, 2 * radius + 3)), replace=False):
            queries[row, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    index = nearby.PHashIndex(blocked[:, 0], radius) if bits == 64 else nearby.PDQIndex(blocked, radius)
    if bits == 64:  # crowded buckets: beyond the table's two layers, or whole buckets
        assert max(int(np.bincount(table.extra_chunks).max()) for table in index.tables) > 100
    else:
        assert max(int(np.diff(table.offsets).max()) for table in index.tables) > 100
    found = index.near(queries[:, 0] if bits == 64 else queries)
    expected = nearby.linear_near(blocked, queries, radius)
    assert found.tolist() == expected.tolist()
    assert 0 < expected.sum() < len(queries)


def test_rules_are_pinned_to_their_release():
    rules = batch.Rules(make_blocklist(urls=["https://a.example/x.jpg"]))
    rules.require_release("ab" * 32)
    with pytest.raises(batch.WrongRelease, match="refusing to filter with another blocklist"):
        rules.require_release("cd" * 32)
    with pytest.raises(batch.WrongRelease, match="refusing to count decoys against another partner tier"):
        rules.require_release("ab" * 32, "ab" * 32)  # the driver counted decoys, this worker cannot
    told = batch.Rules(make_blocklist(urls=["https://a.example/x.jpg"]), exact=make_blocklist())
    told.require_release("ab" * 32, "ab" * 32)
    with pytest.raises(batch.WrongRelease, match="refusing to count decoys against another partner tier"):
        told.require_release("ab" * 32)
    kept = rules.filter(
        pa.record_batch({"url": ["https://a.example/x.jpg", "https://b.example/y.jpg"]}), batch.Columns()
    )
    assert kept.column("url").to_pylist() == ["https://b.example/y.jpg"]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(AS_IS_FULL, fullmatch=True))
def test_what_the_fast_path_takes_as_is_is_its_own_canonical_form(url):
    assert canonical_url(url) == url == web_url(url)


def test_digest_lookups_survive_keys_that_share_their_first_64_bits():
    prefix = b"\x42" * 8
    keys = sorted(prefix + bytes([i]) * 24 for i in range(5)) + [b"\x43" * 32]
    digests = batch.DigestSet(b"".join(keys))
    for key in keys:
        assert key in digests
    assert prefix + b"\x09" * 24 not in digests
    assert b"\x00" * 32 not in digests and b"\xff" * 32 not in digests


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(urls=st.lists(_url, min_size=1, max_size=40), data=st.data())
def test_decoys_told_apart_equal_the_reference_and_drop_the_same_rows(urls, data):
    candidates = blockable(urls)
    public = data.draw(st.lists(st.sampled_from(candidates), max_size=12)) if candidates else []
    real = data.draw(st.lists(st.sampled_from(public), max_size=4)) if public else []
    images = [hashlib.sha256(url.encode()).hexdigest() for url in urls]
    blocked_images = data.draw(st.lists(st.sampled_from(images), max_size=4))  # some rows of decoy URLs too
    blocklist = make_blocklist(urls=public, images=blocked_images)
    partner = make_blocklist(urls=real, images=blocked_images)
    table = pa.table({"url": urls, "sha256": images})
    columns = batch.Columns(sha256="sha256")
    record = table.to_batches()[0]
    told, _ = batch.Rules(blocklist, exact=partner).keep(record, columns)
    assert told.tolist() == batch.reference_keep(blocklist, record, columns, exact=partner).tolist()
    # Telling decoys apart changes the reasons, never which rows go.
    plain, _ = batch.Rules(blocklist).keep(record, columns)
    assert ((told == batch.KEPT) == (plain == batch.KEPT)).all()
    assert (told[plain != 1] == plain[plain != 1]).all()
    decoy = told == batch.REASONS.index("decoy")
    for row in np.flatnonzero(decoy):
        assert urls[row] not in real and images[row] not in blocked_images
    assert all(told[row] == 1 for row, url in enumerate(urls) if url in real)
