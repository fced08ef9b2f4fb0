"""The near-duplicate index at its edges: no entries, one entry, radius 0, radii beyond what a chunk plan is
built for, one bucket holding every entry. Each equals a linear scan (the broad property tests are in
test_batch.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.client import nearby


def index_for(blocked: np.ndarray, radius: int):
    return nearby.PHashIndex(blocked[:, 0], radius) if blocked.shape[1] == 1 else nearby.PDQIndex(blocked, radius)


def near(index, queries: np.ndarray) -> np.ndarray:
    return index.near(queries[:, 0] if queries.shape[1] == 1 else queries)


def flipped(hashes: np.ndarray, counts, rng) -> np.ndarray:
    """Each row of ``hashes`` with its count of random bits flipped."""
    bits = 64 * hashes.shape[1]
    out = hashes.copy()
    for row, count in enumerate(counts):
        for bit in rng.choice(bits, size=int(min(count, bits)), replace=False):
            out[row, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


def random_hashes(rng, rows: int, words: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(rows, words), dtype=np.uint64, endpoint=True)


@pytest.mark.parametrize("words", [1, 4])
def test_no_entries_and_no_queries(words):
    rng = np.random.default_rng(words)
    empty = index_for(np.zeros((0, words), dtype=np.uint64), 8)
    assert near(empty, random_hashes(rng, 5, words)).tolist() == [False] * 5
    full = index_for(random_hashes(rng, 50, words), 8)
    assert near(full, np.zeros((0, words), dtype=np.uint64)).tolist() == []


@pytest.mark.parametrize(("words", "radius"), [(1, 0), (1, 8), (4, 0), (4, 31)])
def test_one_entry(words, radius):
    rng = np.random.default_rng(radius)
    blocked = random_hashes(rng, 1, words)
    queries = flipped(np.repeat(blocked, 4, axis=0), [0, radius, radius + 1, 64 * words], rng)
    assert near(index_for(blocked, radius), queries).tolist() == [True, True, False, False]


@pytest.mark.parametrize("words", [1, 4])
def test_radius_zero_is_equality(words):
    rng = np.random.default_rng(7)
    blocked = random_hashes(rng, 2000, words)
    queries = np.vstack([blocked[:300], flipped(blocked[300:600], [1] * 300, rng)])
    found = near(index_for(blocked, 0), queries)
    assert found.tolist() == [True] * 300 + [False] * 300


@pytest.mark.parametrize(("words", "radius"), [(1, 20), (1, 40), (1, 64), (1, 100), (4, 64), (4, 130), (4, 256)])
def test_radii_beyond_the_usual_plans(words, radius):
    """Chunk radii wider than their chunks, one-bit chunks, and a radius every hash is within."""
    rng = np.random.default_rng(words * 1000 + radius)
    blocked = random_hashes(rng, 300, words)
    queries = np.vstack(
        [
            flipped(blocked[rng.integers(0, 300, size=100)], rng.integers(0, 2 * radius + 2, size=100), rng),
            random_hashes(rng, 50, words),
        ]
    )
    found = near(index_for(blocked, radius), queries)
    assert found.tolist() == nearby.linear_near(blocked, queries, radius).tolist()
    if radius >= 64 * words:
        assert found.all()


@pytest.mark.parametrize(("words", "radius"), [(1, 8), (4, 31)])
def test_every_entry_in_one_bucket(words, radius):
    """A crafted list: thousands of hashes that agree on every chunk but the last few bits, and copies of one."""
    rng = np.random.default_rng(words)
    base = random_hashes(rng, 1, words)
    blocked = np.repeat(base, 3000, axis=0)
    blocked[:, -1] ^= rng.integers(0, 1 << 6, size=3000, dtype=np.uint64)
    blocked = np.vstack([blocked, np.repeat(base, 500, axis=0)])
    queries = flipped(np.repeat(base, 200, axis=0), rng.integers(0, 2 * radius + 4, size=200), rng)
    found = near(index_for(blocked, radius), queries)
    expected = nearby.linear_near(blocked, queries, radius)
    assert found.tolist() == expected.tolist()
    assert 0 < expected.sum() < len(queries)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    words=st.sampled_from([1, 4]),
    entries=st.integers(1, 400),
    radius=st.integers(0, 48),
)
def test_any_small_list_equals_a_linear_scan(seed, words, entries, radius):
    rng = np.random.default_rng(seed)
    blocked = random_hashes(rng, entries, words)
    queries = flipped(blocked[rng.integers(0, entries, size=60)], rng.integers(0, 2 * radius + 3, size=60), rng)
    found = near(index_for(blocked, radius), queries)
    assert found.tolist() == nearby.linear_near(blocked, queries, radius).tolist()


def test_the_kernels_compile_uncached_where_no_cache_directory_is_writable(monkeypatch):
    """numba refuses cache=True when it finds nowhere to write (a read-only install, no writable home)."""
    import numba.core.caching

    from optout.client import hamming

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(cache=True)(hamming.sort_by.py_func)
    sort_by = hamming._compiled(hamming.sort_by.py_func)
    order, bounds = sort_by(np.array([3, 1, 2, 1]), 2)
    assert order.tolist() == [1, 3, 2, 0] and bounds.tolist() == [0, 0, 2, 3, 4]


@pytest.mark.parametrize(("words", "radius", "threads"), [(1, 8, 2), (1, 8, 3), (4, 31, 2), (4, 31, 3)])
def test_threads_give_the_answer_of_one(monkeypatch, words, radius, threads):
    """Both ways of sharing the work answer as one thread and as a linear scan: PDQ's threads split its tables
    (32 over 3,000 entries), pHash's share out each of its tables (its layers by the sorted queries, its crowded
    buckets by the flip masks), whether its 5 tables would split evenly (2 threads) or not (3)."""
    monkeypatch.setattr(nearby, "_SPLIT_ROWS", 100)  # real shares from a few hundred queries
    rng = np.random.default_rng(threads)
    blocked = random_hashes(rng, 3000, words)
    queries = np.vstack(
        [
            flipped(blocked[rng.integers(0, 3000, size=300)], rng.integers(0, 2 * radius, size=300), rng),
            random_hashes(rng, 300, words),
        ]
    )
    one = index_for(blocked, radius)
    one.threads = 1
    many = (
        nearby.PHashIndex(blocked[:, 0], radius, threads=threads)
        if words == 1
        else nearby.PDQIndex(blocked, radius, threads=threads)
    )
    assert (len(many.tables) >= 2 * threads) == (words == 4 or threads == 2)
    assert words == 4 or all(len(table.extra_hashes) for table in many.tables)
    expected = nearby.linear_near(blocked, queries, radius)
    assert 0 < expected.sum() < len(queries)
    assert near(one, queries).tolist() == expected.tolist()
    assert near(many, queries).tolist() == expected.tolist()


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_give_the_answer_of_one_when_the_matches_sit_in_crowded_buckets(monkeypatch, threads):
    """pHash's crowded buckets (three hashes or more) are probed from their side, each thread with a share of the
    flip masks: blocked hashes that are variants of a few, and queries near them, give most matches there."""
    monkeypatch.setattr(nearby, "_SPLIT_ROWS", 100)
    rng = np.random.default_rng(40 + threads)
    blocked = flipped(random_hashes(rng, 60, 1)[rng.integers(0, 60, size=3000)], rng.integers(1, 4, size=3000), rng)
    queries = np.vstack([flipped(blocked[rng.integers(0, 3000, size=400)], [9] * 400, rng), random_hashes(rng, 50, 1)])
    many = nearby.PHashIndex(blocked[:, 0], 8, threads=threads)
    assert sum(len(table.extra_hashes) for table in many.tables) > 1000
    expected = nearby.linear_near(blocked, queries, 8)
    assert 0 < expected.sum() < len(queries)
    assert near(many, queries).tolist() == expected.tolist()


def test_threads_are_at_least_one():
    with pytest.raises(ValueError, match="threads is at least 1"):
        nearby.PHashIndex(np.zeros(3, dtype=np.uint64), 8, threads=0)
    assert nearby.PHashIndex(np.zeros(3, dtype=np.uint64), 8).threads == nearby.available_cpus() >= 1
