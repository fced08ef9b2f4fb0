"""The in-memory watchlist gives exactly the pairs that comparing every row with every watched hash gives."""

import random

import numpy as np
import pytest

from optout.imaging import hashbits
from optout.index import watchlist as watchlist_module
from optout.index.watchlist import Hashes, Watchlist, _layout


def near(rng: random.Random, value: int, bits: int, flips: int) -> int:
    for position in rng.sample(range(bits), flips):
        value ^= 1 << position
    return value


def brute_force(watched_ph, watched_pdq, rows_ph, rows_pdq, ph_radius, pdq_radius) -> list[tuple[int, int]]:
    pairs = set()
    for i, (ph, pdq) in enumerate(zip(rows_ph, rows_pdq, strict=True)):
        for j, (wph, wpdq) in enumerate(zip(watched_ph, watched_pdq, strict=True)):
            if ph is not None and wph is not None and hashbits.hamming(ph, wph) <= ph_radius:
                pairs.add((i, j))
            if pdq is not None and wpdq is not None and hashbits.hamming(pdq, wpdq) <= pdq_radius:
                pairs.add((i, j))
    return sorted(pairs)


@pytest.mark.parametrize(("ph_radius", "pdq_radius", "seed"), [(8, 31, 1), (0, 0, 2), (12, 16, 3), (5, 32, 4)])
def test_matches_are_exactly_those_of_a_full_comparison(ph_radius, pdq_radius, seed):
    rng = random.Random(seed)
    watched_ph = [rng.getrandbits(64) if n % 7 else None for n in range(300)]
    watched_pdq = [rng.getrandbits(256) if n % 3 else None for n in range(300)]
    rows_ph, rows_pdq = [], []
    for n in range(3000):
        source = n % len(watched_ph)
        if n % 5 == 0 and watched_ph[source] is not None:  # a near copy, at or just past the radius
            rows_ph.append(near(rng, watched_ph[source], 64, rng.choice([ph_radius, ph_radius + 1, 1])))
        else:
            rows_ph.append(rng.getrandbits(64) if n % 11 else None)
        if n % 4 == 0 and watched_pdq[source] is not None:
            rows_pdq.append(near(rng, watched_pdq[source], 256, min(256, rng.choice([pdq_radius, pdq_radius + 1]))))
        else:
            rows_pdq.append(None)
    watchlist = Watchlist(phashes=watched_ph, pdqs=watched_pdq, phash_radius=ph_radius, pdq_radius=pdq_radius)

    found = watchlist.match(phashes=rows_ph, pdqs=rows_pdq)

    expected = brute_force(watched_ph, watched_pdq, rows_ph, rows_pdq, ph_radius, pdq_radius)
    assert found == expected
    assert len(expected) > 100  # the data does hold near copies


def test_signed_database_words_match_like_unsigned_hashes():
    value = (1 << 63) | 0x1234
    pdq = (1 << 255) | 0xABC
    watchlist = Watchlist(phashes=[value], pdqs=[pdq], phash_radius=2, pdq_radius=2)
    signed_words = hashbits.pdq_to_words(pdq)  # as the database stores them
    assert signed_words[0] < 0
    assert watchlist.match(phashes=[hashbits.to_signed64(value ^ 1)], pdqs=[None]) == [(0, 0)]
    assert watchlist.match(phashes=[None], pdqs=[signed_words]) == [(0, 0)]


def test_an_empty_watchlist_matches_nothing():
    watchlist = Watchlist(phashes=[], pdqs=[], phash_radius=8, pdq_radius=31)
    assert watchlist.match(phashes=[1, 2, None], pdqs=[None, None, None]) == []


def test_a_radius_out_of_range_is_refused():
    with pytest.raises(ValueError):
        Watchlist(phashes=[1], pdqs=[None], phash_radius=13, pdq_radius=31)


def test_many_watched_hashes_get_wider_chunks():
    # 10,000 monitored pictures with 77 variants each: PDQ in twelve chunks of 21 and 22 bits, eight of them
    # probed at radius 2; a few hundred watched hashes: narrow chunks (small tables, few probes).
    many = _layout(4, 31, 770_000)
    assert sorted({chunk.bits for chunk, _ in many}) == [21, 22]
    assert sorted(radius for _, radius in many) == [1] * 4 + [2] * 8
    few = _layout(4, 31, 300)
    assert max(chunk.bits for chunk, _ in few) <= 16
    assert sum(1 << chunk.bits for chunk, _ in few) < sum(1 << chunk.bits for chunk, _ in many) / 100
    assert [(chunk.bits, radius) for chunk, radius in _layout(1, 8, 770_000)] == [(22, 2), (21, 2), (21, 2)]


@pytest.mark.parametrize("seed", [5, 6])
def test_the_wide_chunks_match_exactly_too(seed, monkeypatch):
    # The cut 770,000 watched hashes get, on a set small enough to compare pair by pair.
    monkeypatch.setattr(watchlist_module, "_CANDIDATE_COST", 10_000)
    assert len(_layout(4, 31, 300)) == 12
    test_matches_are_exactly_those_of_a_full_comparison(8, 31, seed)


def test_rows_given_as_arrays_match_like_python_values():
    rng = random.Random(9)
    watched = [rng.getrandbits(64) for _ in range(50)]
    rows = [near(rng, value, 64, 4) for value in watched[:20]] + [rng.getrandbits(64) for _ in range(20)]
    watchlist = Watchlist(phashes=watched, pdqs=[None] * 50, phash_radius=8, pdq_radius=31)
    known = np.array([n % 3 != 0 for n in range(len(rows))])
    array = np.array([[hashbits.to_signed64(value)] for value in rows], dtype=np.int64)  # as the database has them
    no_pdq = Hashes(np.zeros((0, 4), dtype=np.uint64), np.zeros(0, dtype=np.int64))
    rows_at, watched_at = watchlist.pairs(phashes=Hashes.of(array, known), pdqs=no_pdq)
    expected = watchlist.match(phashes=[value if known[n] else None for n, value in enumerate(rows)], pdqs=[])
    assert list(zip(rows_at.tolist(), watched_at.tolist(), strict=True)) == expected
    assert len(expected) >= 13
