"""The matcher returns exactly what a linear scan returns, on whichever database is configured."""

import itertools
import random
import re
import threading

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optout.imaging import hashbits
from optout.index import matcher
from optout.index.matcher import Match
from optout.models import Dataset, DatasetRow

PHASH_BITS = 64
PDQ_BITS = 256

_counter = itertools.count()


def make_dataset(name: str | None = None) -> Dataset:
    return Dataset.objects.create(name=name or f"ds-{next(_counter)}")


def row_for(dataset: Dataset, *, phash: int | None = None, pdq: int | None = None) -> DatasetRow:
    """An unsaved row holding the given unsigned hashes, in the signed form the database stores."""
    n = next(_counter)
    words = hashbits.pdq_to_words(pdq) if pdq is not None else (None, None, None, None)
    return DatasetRow(
        dataset=dataset,
        url=f"https://example.org/{n}.jpg",
        url_sha256=f"{n:064x}",
        phash=hashbits.to_signed64(phash) if phash is not None else None,
        pdq_0=words[0],
        pdq_1=words[1],
        pdq_2=words[2],
        pdq_3=words[3],
        pdq_quality=90 if pdq is not None else None,
    )


def flip(value: int, positions) -> int:
    for p in positions:
        value ^= 1 << p
    return value


def flip_random(rng: random.Random, value: int, bits: int, count: int) -> int:
    return flip(value, rng.sample(range(bits), count))


def ids(matches: list[Match]) -> set[int]:
    return {m.row_id for m in matches}


def assert_same_as_linear(family: str, query: int, radius: int, **kwargs) -> list[Match]:
    fast = getattr(matcher, f"{family}_neighbours")(query, radius, **kwargs)
    slow = getattr(matcher, f"{family}_neighbours_linear")(query, radius, **kwargs)
    assert fast == slow
    assert fast == sorted(fast, key=lambda m: (m.distance, m.row_id))
    assert all(m.distance <= radius for m in fast)
    return fast


# --- Property: matcher == linear scan, random and clustered data -------------------------

FAMILIES = {"phash": (PHASH_BITS, matcher.PHASH_MAX_RADIUS), "pdq": (PDQ_BITS, matcher.PDQ_MAX_RADIUS)}


def _data(rng: random.Random, bits: int, query: int, radius: int, clustered: bool, size: int) -> list[int]:
    if not clustered:
        # Uniform hashes, plus a few at the query radius so the sets are not always empty.
        hashes = [rng.getrandbits(bits) for _ in range(size)]
        hashes += [flip_random(rng, query, bits, min(bits, radius + d)) for d in (-1, 0, 0, 1, 2) if radius + d >= 0]
        return hashes
    # A few centres near the query, rows at small distances from them: many rows
    # land right around the radius, where an off-by-one in the chunk radii shows.
    centres = [query] + [flip_random(rng, query, bits, rng.randint(0, radius + 2)) for _ in range(3)]
    hashes = []
    for _ in range(size):
        centre = rng.choice(centres)
        hashes.append(flip_random(rng, centre, bits, rng.randint(max(0, radius - 3), radius + 3)))
    return hashes


def _load(family: str, hashes: list[int]) -> Dataset:
    DatasetRow.objects.all().delete()
    dataset = make_dataset()
    DatasetRow.objects.bulk_create([row_for(dataset, **{family: h}) for h in hashes])
    return dataset


@pytest.mark.django_db
@pytest.mark.parametrize("family", ["phash", "pdq"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), clustered=st.booleans(), size=st.integers(min_value=0, max_value=80))
def test_matcher_returns_what_a_linear_scan_returns(family, data, clustered, size):
    bits, max_radius = FAMILIES[family]
    radius = data.draw(st.integers(min_value=0, max_value=max_radius), label="radius")
    query = data.draw(st.integers(min_value=0, max_value=(1 << bits) - 1), label="query")
    rng = data.draw(st.randoms(use_true_random=False), label="rng")
    _load(family, _data(rng, bits, query, radius, clustered, size))

    found = assert_same_as_linear(family, query, radius)
    if found:
        # The cut-off applies after the ordering.
        assert assert_same_as_linear(family, query, radius, limit=1) == found[:1]


# --- The chunk radii: the pigeonhole argument, checked without a database -------------------


@given(data=st.data())
@pytest.mark.parametrize("family", [matcher.PHASH, matcher.PDQ], ids=["phash", "pdq"])
def test_every_spread_of_at_most_r_flips_leaves_a_chunk_within_its_probe_radius(family, data):
    radius = data.draw(st.integers(min_value=0, max_value=family.max_radius))
    radii = matcher.chunk_radii(family.chunks, radius)
    # Which chunk each of at most r flipped bits falls in.
    chunks = data.draw(st.lists(st.integers(min_value=0, max_value=len(radii) - 1), max_size=radius))
    flips = [chunks.count(i) for i in range(len(radii))]
    assert any(count <= r for count, r in zip(flips, radii, strict=True))


@pytest.mark.parametrize("radius", range(matcher.PDQ_MAX_RADIUS + 1))
def test_chunk_radii_are_as_small_as_the_pigeonhole_allows(radius):
    radii = matcher.chunk_radii(matcher.PDQ.chunks, radius)
    # One flip more in every chunk than its radius would exceed r: no radius can shrink.
    assert sum(r + 1 for r in radii) == radius + 1
    assert max(radii) - min(radii) <= 1


# --- The hard cases for the pigeonhole: flips spread over the chunks ----------------------


def _compositions(total: int, parts: int):
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1, *cuts, total + parts - 1)
        yield [edges[i + 1] - edges[i] - 1 for i in range(parts)]


def _spread(rng: random.Random, value: int, family: matcher._Family, counts) -> int:
    """``value`` with counts[i] bits flipped inside chunk i."""
    for chunk, count in zip(family.chunks, counts, strict=True):
        # Word 0 is the most significant 64 bits.
        base = 64 * (len(family.words) - 1 - chunk.word)
        shift, bits = chunk.shift, chunk.bits
        value = flip(value, [base + shift + p for p in rng.sample(range(bits), count)])
    return value


@pytest.mark.django_db
@pytest.mark.parametrize("radius", range(matcher.PHASH_MAX_RADIUS + 1))
def test_phash_finds_every_spread_of_flips_at_the_radius_and_none_beyond(radius):
    rng = random.Random(radius)
    query = rng.getrandbits(64) | (1 << 63)
    layout = matcher.PHASH
    at_radius = [_spread(rng, query, layout, c) for c in _compositions(radius, 3)]
    beyond = [_spread(rng, query, layout, c) for c in _compositions(radius + 1, 3)]
    dataset = make_dataset()
    rows = DatasetRow.objects.bulk_create([row_for(dataset, phash=h) for h in at_radius + beyond])
    found = assert_same_as_linear("phash", query, radius)
    assert ids(found) == {r.id for r in rows[: len(at_radius)]}
    assert {m.distance for m in found} == {radius}


@pytest.mark.django_db
@pytest.mark.parametrize("radius", [0, 1, 11, 12, 13, 23, 24, 25, 30, 31, 32])
def test_pdq_finds_flips_spread_evenly_over_the_chunks(radius):
    rng = random.Random(radius)
    query = rng.getrandbits(256) | (1 << 255)
    layout = matcher.PDQ
    dataset = make_dataset()
    hashes = {}
    for distance in (radius, radius + 1):
        for _ in range(40):
            # As even as possible, in a random order: every chunk sits near its probe radius.
            counts = [distance // 12 + (i < distance % 12) for i in range(12)]
            rng.shuffle(counts)
            hashes[_spread(rng, query, layout, counts)] = distance
    rows = DatasetRow.objects.bulk_create([row_for(dataset, pdq=h) for h in hashes])
    found = assert_same_as_linear("pdq", query, radius)
    assert ids(found) == {r.id for r, d in zip(rows, hashes.values(), strict=True) if d == radius}


# --- Edge cases ------------------------------------------------------------------------


@pytest.mark.django_db
def test_exactly_r_is_found_and_r_plus_one_is_not():
    dataset = make_dataset()
    query = 0x0123_4567_89AB_CDEF
    near = row_for(dataset, phash=flip(query, range(8)))
    far = row_for(dataset, phash=flip(query, range(9)))
    DatasetRow.objects.bulk_create([near, far])
    assert matcher.phash_neighbours(query, 8) == [Match(near.id, 8)]
    assert ids(matcher.phash_neighbours(query, 9)) == {near.id, far.id}


@pytest.mark.django_db
def test_hashes_with_the_sign_bit_set_match():
    dataset = make_dataset()
    query = (1 << 63) | 0xFF
    rows = DatasetRow.objects.bulk_create(
        [
            row_for(dataset, phash=query),  # stored as a negative BIGINT
            row_for(dataset, phash=query ^ (1 << 63)),  # differs only in the sign bit
            row_for(dataset, phash=(1 << 64) - 1),
            row_for(dataset, pdq=(1 << 256) - 1),
            row_for(dataset, pdq=((1 << 256) - 1) ^ (1 << 255) ^ 1),
        ]
    )
    assert DatasetRow.objects.get(pk=rows[0].pk).phash < 0
    assert matcher.phash_neighbours(query, 1) == [Match(rows[0].id, 0), Match(rows[1].id, 1)]
    # The signed form the database holds is accepted as the same hash.
    assert matcher.phash_neighbours(hashbits.to_signed64(query), 1) == matcher.phash_neighbours(query, 1)
    assert matcher.phash_neighbours((1 << 64) - 1, 0) == [Match(rows[2].id, 0)]
    assert matcher.pdq_neighbours((1 << 256) - 1, 2) == [Match(rows[3].id, 0), Match(rows[4].id, 2)]
    assert_same_as_linear("phash", query, 12)
    assert_same_as_linear("pdq", (1 << 256) - 1, 32)


@pytest.mark.django_db
def test_rows_without_hashes_are_ignored():
    dataset = make_dataset()
    empty = row_for(dataset)
    phash_only = row_for(dataset, phash=0)
    pdq_only = row_for(dataset, pdq=0)
    half_pdq = row_for(dataset, pdq=0)
    half_pdq.pdq_3 = None  # a partly written PDQ hash is no hash
    DatasetRow.objects.bulk_create([empty, phash_only, pdq_only, half_pdq])
    assert matcher.phash_neighbours(0, 12) == [Match(phash_only.id, 0)]
    assert matcher.pdq_neighbours(0, 32) == [Match(pdq_only.id, 0)]
    assert matcher.phash_neighbours_linear(0, 12) == [Match(phash_only.id, 0)]
    assert matcher.pdq_neighbours_linear(0, 32) == [Match(pdq_only.id, 0)]


@pytest.mark.django_db
def test_dataset_filter_and_limit():
    first, second = make_dataset(), make_dataset()
    query = 0xDEAD_BEEF_0000_FFFF
    rows = DatasetRow.objects.bulk_create(
        [
            row_for(first, phash=flip(query, [1, 2])),
            row_for(second, phash=query),
            row_for(first, phash=query),
            row_for(second, phash=flip(query, [40])),
        ]
    )
    assert matcher.phash_neighbours(query, 4, dataset_id=first.id) == [Match(rows[2].id, 0), Match(rows[0].id, 2)]
    assert matcher.phash_neighbours(query, 4, dataset_id=second.id) == [Match(rows[1].id, 0), Match(rows[3].id, 1)]
    assert matcher.phash_neighbours(query, 4, limit=2) == [Match(rows[1].id, 0), Match(rows[2].id, 0)]
    assert matcher.phash_neighbours(query, 4, dataset_id=first.id, limit=1) == [Match(rows[2].id, 0)]
    assert_same_as_linear("phash", query, 4, dataset_id=second.id, limit=1)
    pdq_query = 1 << 200
    pdq_rows = DatasetRow.objects.bulk_create([row_for(first, pdq=pdq_query), row_for(second, pdq=pdq_query | 1)])
    assert matcher.pdq_neighbours(pdq_query, 1, dataset_id=second.id) == [Match(pdq_rows[1].id, 1)]
    assert_same_as_linear("pdq", pdq_query, 31, dataset_id=first.id)


@pytest.mark.parametrize(
    "call",
    [
        lambda: matcher.phash_neighbours(0, -1),
        lambda: matcher.phash_neighbours(0, 13),
        lambda: matcher.phash_neighbours(0, 2.0),
        lambda: matcher.phash_neighbours(1 << 64, 2),
        lambda: matcher.phash_neighbours(-(1 << 63) - 1, 2),
        lambda: matcher.phash_neighbours(0, 2, limit=0),
        lambda: matcher.pdq_neighbours(0, 33),
        lambda: matcher.pdq_neighbours(1 << 256, 31),
        lambda: matcher.pdq_neighbours_linear(0, -1),
        lambda: matcher.phash_neighbours_linear(0, 13),
    ],
)
def test_rejects_out_of_range_radius_and_hashes(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.django_db(transaction=True)
def test_a_row_is_matchable_as_soon_as_it_commits():
    dataset = make_dataset()
    query = 0xFFFF_0000_FFFF_0000
    seen_inside = []

    def look_from_another_connection():
        try:
            seen_inside.append(matcher.phash_neighbours(query, 3))
        finally:
            connection.close()

    with transaction.atomic():
        row = row_for(dataset, phash=query ^ 0b101)
        row.save()
        if connection.vendor == "postgresql":
            # Another connection does not see it yet (SQLite's test database would block instead).
            other = threading.Thread(target=look_from_another_connection)
            other.start()
            other.join()
            assert seen_inside == [[]]
    assert matcher.phash_neighbours(query, 3) == [Match(row.id, 2)]


# --- Sublinear: PostgreSQL answers from the chunk indexes ---------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(("name", "radius"), [("phash", 8), ("phash", 12), ("pdq", 31)])
def test_postgres_plan_uses_the_chunk_indexes_not_a_table_scan(name, radius):
    family = matcher.PHASH if name == "phash" else matcher.PDQ
    bits = 64 * len(family.words)
    rng = random.Random(7)
    dataset = make_dataset()
    DatasetRow.objects.bulk_create(
        [row_for(dataset, **{name: rng.getrandbits(bits)}) for _ in range(20_000)], batch_size=5000
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {DatasetRow._meta.db_table}")
        query = matcher._words(family, rng.getrandbits(bits))
        sql, params = matcher._postgres_query(family, query, radius, dataset_id=dataset.id, limit=None)
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    # Every chunk the pigeonhole asks for is looked up through its own index (on PostgreSQL a
    # partition's copy of it, e.g. optout_datasetrow_default_ph_c0_phash_idx).
    for chunk in family.chunks:
        assert re.search(rf"using \w*datasetrow\w*_{chunk.column}(_phash)?(_idx)?\b", plan), plan
