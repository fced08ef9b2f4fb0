"""Benchmark the matcher against a linear scan on PostgreSQL, at growing table sizes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/optout_bench \\
        .venv/bin/python bench/match.py --sizes 1e5,1e6,1e7

The database must be migrated and is filled with synthetic rows (use a
database of its own: the bench empties optout_datasetrow first). Rows are
loaded with COPY, with the secondary indexes dropped during the load and
rebuilt after it, then VACUUM ANALYZE. Sizes grow in one table: 1e6 adds to
the 1e5 rows, and so on.

The data: 80% of rows have uniform random hashes, 20% sit in clusters (a
centre and rows at a random bit-flip rate from it, so many are near the match
radius); 3% of rows have no hash yet; 15% have PDQ below quality 50 (no PDQ
words stored). Queries: half are existing hashes with a few bits flipped (true
matches), half are uniform random (usually no match). Every query's matcher
answer is checked against the linear scan where both ran.
"""

import argparse
import hashlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from optout.index import matcher  # noqa: E402
from optout.models import Dataset, DatasetRow  # noqa: E402

TABLE = DatasetRow._meta.db_table
CLUSTERED = 0.2
CLUSTER_SIZE = 50
UNHASHED = 0.03
LOW_QUALITY = 0.15
BATCH = 500_000


# --- Loading ---------------------------------------------------------------------


def _pack(bits: np.ndarray) -> np.ndarray:
    """(n, 64*k) booleans, most significant first -> (n, k) signed 64-bit words."""
    return np.packbits(bits, axis=1, bitorder="big").view(">i8").astype(np.int64)


def _hashes(rng: np.random.Generator, n: int, nbits: int) -> np.ndarray:
    """n hashes of nbits as (n, nbits/64) signed words: uniform, and clustered."""
    bits = rng.random((n, nbits), dtype=np.float32) < 0.5
    clustered = rng.random(n) < CLUSTERED
    m = int(clustered.sum())
    if m:
        centres = rng.random((max(1, m // CLUSTER_SIZE), nbits), dtype=np.float32) < 0.5
        centre = centres[rng.integers(0, len(centres), m)]
        # A flip rate per row: distances spread from 0 to ~20% of the bits, across the match radii.
        rate = rng.uniform(0.0, 0.2, m).astype(np.float32)[:, None]
        bits[clustered] = centre ^ (rng.random((m, nbits), dtype=np.float32) < rate)
    return _pack(bits)


def _copy_batch(cursor, rng: np.random.Generator, start: int, n: int, dataset_id: int) -> None:
    phash = _hashes(rng, n, 64)[:, 0].tolist()
    pdq = _hashes(rng, n, 256).tolist()
    hashed = (rng.random(n) >= UNHASHED).tolist()
    quality = rng.integers(0, 101, n)
    quality = np.where(rng.random(n) < LOW_QUALITY, quality % 50, 50 + quality % 51).tolist()
    sha = rng.bytes(32 * n).hex()
    lines = []
    for i in range(n):
        url = f"https://img{(start + i) % 997}.example.com/p/{start + i}.jpg"
        url_sha = hashlib.sha256(url.encode()).hexdigest()
        if hashed[i]:
            words = "\t".join(map(str, pdq[i])) if quality[i] >= 50 else "\\N\t\\N\t\\N\t\\N"
            lines.append(
                f"{dataset_id}\t{url}\t{url_sha}\t{sha[64 * i : 64 * i + 64]}\t{phash[i]}\t{words}\t{quality[i]}"
                "\t2024-01-01 00:00:00+00\t1\t\n"
            )
        else:
            lines.append(f"{dataset_id}\t{url}\t{url_sha}\t\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t0\t\n")
    cursor.copy_expert(
        f"COPY {TABLE} (dataset_id, url, url_sha256, sha256, phash, pdq_0, pdq_1, pdq_2, pdq_3, pdq_quality, "
        "hashed_at, hash_attempts, fetch_error) FROM STDIN",
        io.StringIO("".join(lines)),
    )


def _secondary_indexes(cursor) -> tuple[list[str], list[str]]:
    """DDL to recreate every index and constraint but the primary key, and DDL to drop them."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY conname",
        [TABLE],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) ORDER BY i.relname",
        [TABLE],
    )
    indexes = cursor.fetchall()
    drop = [f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"' for name, _ in constraints]
    drop += [f'DROP INDEX "{name}"' for name, _ in indexes]
    # pg_get_indexdef says "ON ONLY" for an index of a partitioned table, which would not recurse
    # into the partitions: rebuild it on all of them.
    create = [definition.replace(" ON ONLY ", " ON ", 1) for _, definition in indexes]
    create += [f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}' for name, definition in constraints]
    return create, drop


def load(target: int, dataset_id: int, rng: np.random.Generator) -> None:
    raw = connection.connection
    with raw.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        have = cursor.fetchone()[0]
        if have >= target:
            return
        started = time.perf_counter()
        create, drop = _secondary_indexes(cursor)
        for statement in drop:
            cursor.execute(statement)
        for start in range(have, target, BATCH):
            _copy_batch(cursor, rng, start, min(BATCH, target - start), dataset_id)
            print(f"  loaded {min(start + BATCH, target):,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for statement in create:
            cursor.execute(statement)
        print(f"  indexes rebuilt ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute(f"VACUUM (ANALYZE) {TABLE}")
        print(f"  vacuumed and analyzed ({time.perf_counter() - started:.0f} s)", flush=True)


# --- Queries ---------------------------------------------------------------------


def _query_hashes(rng: np.random.Generator, n_rows: int, family: str, radius: int, count: int) -> list[int]:
    """Half near existing rows (a few bits flipped), half uniform random; unsigned ints."""
    nbits = 64 if family == "phash" else 256
    columns = "phash" if family == "phash" else "pdq_0, pdq_1, pdq_2, pdq_3"
    ids = rng.integers(1, n_rows + 1, count * 4).tolist()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {TABLE} WHERE id = ANY(%s) AND {columns.split(',')[-1]} IS NOT NULL", [ids]
        )
        existing = cursor.fetchall()
    queries = []
    for i in range(count):
        if i % 2 == 0 and existing:
            value = 0
            for word in existing[i % len(existing)]:
                value = (value << 64) | (word & ((1 << 64) - 1))
            for bit in rng.choice(nbits, int(rng.integers(0, radius + 1)), replace=False).tolist():
                value ^= 1 << bit
        else:
            value = int.from_bytes(rng.bytes(nbits // 8), "big")
        queries.append(value)
    return queries


def _timed(function, queries, radius) -> tuple[list[float], list]:
    times, answers = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(function(query, radius))
        times.append((time.perf_counter() - started) * 1000)
    return times, answers


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[q - 1] if len(times) > 1 else times[0]


def _candidates(family: str, query: int, radius: int) -> int:
    """How many index entries the chunk lookups touch (before verification)."""
    fam = matcher.PHASH if family == "phash" else matcher.PDQ
    probes = matcher._probes(fam, matcher._words(fam, query), radius)
    with connection.cursor() as cursor:
        total = 0
        for chunk, values in probes:
            cursor.execute(
                f"SELECT count(*) FROM {TABLE} WHERE {chunk.column} = ANY(%s::int[])",
                ["{" + ",".join(map(str, values)) + "}"],
            )
            total += cursor.fetchone()[0]
    return total


def bench_size(n_rows: int, args, rng: np.random.Generator) -> None:
    print(f"\n== {n_rows:,} rows ==", flush=True)
    linear_count = args.linear_queries if n_rows < 5_000_000 else max(3, args.linear_queries // 2)
    configs = [("phash", r) for r in args.phash_radii] + [("pdq", r) for r in args.pdq_radii]
    print(
        f"{'family':6} {'r':>3} {'queries':>7} {'matches':>8} {'cand/q':>8} {'mih p50':>9} {'mih p95':>9} "
        f"{'lin n':>5} {'lin p50':>9} {'lin p95':>9} {'speed-up':>8}"
    )
    for family, radius in configs:
        fast = getattr(matcher, f"{family}_neighbours")
        slow = getattr(matcher, f"{family}_neighbours_linear")
        queries = _query_hashes(rng, n_rows, family, radius, args.queries)
        _timed(fast, queries[:5], radius)  # warm the caches a little
        fast_times, fast_answers = _timed(fast, queries, radius)
        lin = queries[:: max(1, len(queries) // linear_count)][:linear_count]
        slow_times, slow_answers = _timed(slow, lin, radius)
        for query, answer in zip(lin, slow_answers, strict=True):
            if answer != fast_answers[queries.index(query)]:
                raise SystemExit(f"MISMATCH {family} r={radius} query={query:x}")
        matches = statistics.mean(len(a) for a in fast_answers)
        cand = statistics.mean(_candidates(family, q, radius) for q in queries[:10])
        p50, slow_p50 = _p(fast_times, 50), _p(slow_times, 50)
        print(
            f"{family:6} {radius:>3} {len(queries):>7} {matches:>8.1f} {cand:>8.0f} {p50:>7.2f}ms {_p(fast_times, 95):>7.2f}ms "
            f"{len(lin):>5} {slow_p50:>7.0f}ms {_p(slow_times, 95):>7.0f}ms {slow_p50 / p50:>7.0f}x",
            flush=True,
        )
    if args.discovery:
        bench_discovery(args)
    with connection.cursor() as cursor:
        # Summed over the partitions (the table itself may be partitioned and hold nothing).
        leaves = "SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf"
        cursor.execute(
            f"SELECT sum(pg_relation_size(relid)), sum(pg_total_relation_size(relid)), sum(pg_indexes_size(relid))"
            f" FROM ({leaves}) t",
            [TABLE],
        )
        heap, total, indexes = cursor.fetchone()
        cursor.execute(
            "SELECT p.relname, sum(pg_relation_size(i.indexrelid)) FROM pg_partition_tree(%s::regclass) t"
            " JOIN pg_index i ON i.indrelid = t.relid"
            " JOIN pg_inherits h ON h.inhrelid = i.indexrelid JOIN pg_class p ON p.oid = h.inhparent"
            " WHERE t.isleaf GROUP BY p.relname ORDER BY p.relname",
            [TABLE],
        )
        sizes = cursor.fetchall()
    mb = 1024 * 1024
    print(f"table {heap / mb:,.0f} MB, all indexes {indexes / mb:,.0f} MB, total {total / mb:,.0f} MB")
    print("  " + ", ".join(f"{name.removeprefix('datasetrow_')} {size / mb:,.0f}" for name, size in sizes) + " (MB)")


def bench_discovery(args) -> None:
    """The matcher's cost of discovery for one reference picture: every variant, both families."""
    from django.conf import settings

    from optout import imaging
    from tests import images

    for name in ("astronaut", "coffee", "rocket"):
        decoded = imaging.decode_image(images.photo_jpeg(name, (1024, 768)), max_bytes=1 << 26, max_pixels=1 << 26)
        variants = imaging.reference_variants(decoded)
        started = time.perf_counter()
        queries = found = 0
        for variant in variants:
            found += len(matcher.phash_neighbours(variant.signals.phash, settings.OPTOUT_PHASH_THRESHOLD))
            queries += 1
            if variant.signals.pdq is not None:
                found += len(matcher.pdq_neighbours(variant.signals.pdq, settings.OPTOUT_PDQ_THRESHOLD))
                queries += 1
        elapsed = time.perf_counter() - started
        print(
            f"discovery, one reference picture ({name}, {len(variants)} variants): {queries} matcher queries "
            f"(pHash r={settings.OPTOUT_PHASH_THRESHOLD}, PDQ r={settings.OPTOUT_PDQ_THRESHOLD}) in "
            f"{elapsed * 1000:,.0f} ms, {found} rows found",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6", help="comma-separated row counts, e.g. 1e5,1e6,1e7")
    parser.add_argument("--queries", type=int, default=100, help="matcher queries per configuration")
    parser.add_argument("--linear-queries", type=int, default=10, help="linear-scan queries per configuration")
    parser.add_argument("--phash-radii", default="4,8,12")
    parser.add_argument("--pdq-radii", default="31")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drop", action="store_true", help="empty the table at the end")
    parser.add_argument(
        "--no-discovery", dest="discovery", action="store_false", help="skip the per-request discovery figure"
    )
    args = parser.parse_args()
    args.phash_radii = [int(r) for r in args.phash_radii.split(",")]
    args.pdq_radii = [int(r) for r in args.pdq_radii.split(",")]
    sizes = sorted(int(float(s)) for s in args.sizes.split(","))
    if connection.vendor != "postgresql":
        raise SystemExit("set DATABASE_URL to a PostgreSQL database of its own")
    rng = np.random.default_rng(args.seed)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        print(cursor.fetchone()[0].split(" on ")[0], f"| {os.cpu_count()} cores")
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        if cursor.fetchone()[0] > sizes[0]:
            cursor.execute(f"TRUNCATE {TABLE} RESTART IDENTITY CASCADE")
    dataset, _ = Dataset.objects.get_or_create(name="bench")
    for size in sizes:
        print(f"\nloading to {size:,} rows", flush=True)
        load(size, dataset.id, rng)
        bench_size(size, args, rng)
    if args.drop:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TABLE} RESTART IDENTITY CASCADE")


if __name__ == "__main__":
    main()
