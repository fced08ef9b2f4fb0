"""Benchmark of ``publish_release``: a blocklist of N entries, published four times, with and without decoys.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/optout_publishbench .venv/bin/python bench/publish.py \\
        --entries 1000000 --decoys 0

For each k in --decoys (0 = bare public keys, as before decoys), in the same run: fills the blocklist with N
entries in SQL (every one with an image sha256; half with pHash and PDQ), whose URLs are rows of a dataset of
--rows rows over --hosts hosts (so decoys can be drawn), then times:
1. the first release (snapshots and deltas of both tiers, Parquet too, decoys drawn, signed);
2. a release after 1% of the entries changed (1% new holds, 0.5% released);
3. a release after 100 entries changed (its delta's size is printed);
4. a release with nothing changed (the schedule's re-signing; the snapshot files are reused).
It prints the process's peak resident memory after each (the fill runs in the database, so that peak is the
publisher's), and the snapshot sizes per entry. Files go to a temporary directory through the file-system storage.

It empties the dataset index and the blocklist of the database it runs on, so it refuses a database whose name
has no "bench".
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/optout_publishbench")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from optout.blocklist import holds, releases, signing  # noqa: E402
from optout.models import BlocklistHold, Dataset  # noqa: E402


def fill(entries: int, rows: int, hosts: int) -> None:
    """N entries on every (rows / N)-th row of a synthetic dataset, built by the database itself."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE optout_datasetrow, optout_dataset, optout_blocklisthold, optout_publicdecoy, "
            "optout_blocklistentry, optout_release, optout_feedaccess CASCADE"
        )
    dataset = Dataset.objects.create(name="bench-publish")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO optout_datasetrow (dataset_id, url, url_sha256, sha256, hash_attempts, fetch_error)
            SELECT %s, u, k, '', 0, ''
            FROM (SELECT u, encode(sha256(convert_to(u, 'UTF8')), 'hex') AS k
                  FROM (SELECT 'https://h' || (i::bigint * 7919 %% %s) || '.example/p/' || md5(i::text) || '.jpg' AS u
                        FROM generate_series(1, %s) AS i) s) h
            ORDER BY k  -- in index order: the key indexes grow at their right edge instead of everywhere
            """,
            [dataset.pk, hosts, rows],
        )
        cursor.execute("UPDATE optout_dataset SET row_count = %s WHERE id = %s", [rows, dataset.pk])  # as an import
        step = max(1, rows // (entries * 2))  # every other slot stays free for the later new holds
        cursor.execute(
            """
            INSERT INTO optout_blocklistentry (url_sha256, sha256, phash, pdq, pdq_quality, blocked, published,
                dirty, decoys_drawn, created_at, changed_at)
            SELECT r.url_sha256, encode(sha256(convert_to('img' || r.n, 'UTF8')), 'hex'),
                CASE WHEN r.n %% 2 = 0 THEN ('x' || substr(md5(r.n::text), 1, 16))::bit(64)::bigint END,
                CASE WHEN r.n %% 2 = 0 THEN md5(r.n::text) || md5((r.n + 1)::text) ELSE '' END,
                CASE WHEN r.n %% 2 = 0 THEN 50 + r.n %% 51 END,
                TRUE, FALSE, TRUE, FALSE, now(), now()
            FROM (SELECT url_sha256, row_number() OVER (ORDER BY id) AS n FROM optout_datasetrow) r
            WHERE r.n %% %s = 0 AND r.n / %s <= %s
            """,
            [step * 2, step * 2, entries],
        )
        cursor.execute(
            "INSERT INTO optout_blocklisthold (entry_id, holder, created_at) "
            "SELECT id, 'bench:' || id, now() FROM optout_blocklistentry"
        )
        cursor.execute("ANALYZE")


def reset() -> None:
    """Back to the blocklist ``fill`` made, unpublished: the next k runs on the same entries and rows."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE optout_publicdecoy, optout_release, optout_feedaccess CASCADE")
        cursor.execute("SELECT min(created_at) FROM optout_blocklistentry")
        (filled,) = cursor.fetchone()
        cursor.execute("DELETE FROM optout_blocklisthold h USING optout_blocklistentry e "
                       "WHERE e.id = h.entry_id AND e.created_at > %s", [filled])  # fmt: skip
        cursor.execute("DELETE FROM optout_blocklistentry WHERE created_at > %s", [filled])
        cursor.execute(
            "INSERT INTO optout_blocklisthold (entry_id, holder, created_at) SELECT id, 'bench:' || id, now() "
            "FROM optout_blocklistentry e WHERE NOT EXISTS (SELECT 1 FROM optout_blocklisthold h WHERE h.entry_id = e.id)"
        )
        cursor.execute("UPDATE optout_blocklistentry SET blocked = TRUE, published = FALSE, dirty = TRUE, "
                       "decoys_drawn = FALSE")  # fmt: skip
        cursor.execute("VACUUM ANALYZE optout_blocklistentry")
        cursor.execute("VACUUM ANALYZE optout_blocklisthold")


def free_rows(count: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.url_sha256 FROM optout_datasetrow r WHERE NOT EXISTS (SELECT 1 FROM optout_blocklistentry e "
            "WHERE e.url_sha256 = r.url_sha256) AND NOT EXISTS (SELECT 1 FROM optout_publicdecoy d "
            "WHERE d.url_sha256 = r.url_sha256) ORDER BY r.id DESC LIMIT %s",
            [count],
        )
        return [key for (key,) in cursor.fetchall()]


def change(new: int, released: int, tag: str) -> None:
    for i, key in enumerate(free_rows(new)):
        holds.hold(holder=f"bench:{tag}:{i}", url_sha256=key, image_sha256=f"{i:064x}")
    old = BlocklistHold.objects.exclude(holder__contains=":new").order_by("id").values_list("holder", flat=True)
    for holder in list(old[:released]):
        holds.release_hold(holder=holder)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, storage, key) -> tuple[float, object]:
    started = time.perf_counter()
    release = releases.publish_release(storage=storage, signing_key=key)
    elapsed = time.perf_counter() - started
    public = release.tiers["public"]
    print(
        f"  {label}: release {release.version} in {elapsed:.2f} s; {release.entries:,} entries "
        f"(+{release.added:,} -{release.removed:,}), public keys {public['snapshot']['entries']:,}; "
        f"delta public {_delta_bytes(release, 'public'):,} B, partner {_delta_bytes(release, 'partner'):,} B; "
        f"peak RSS {peak_mb():.0f} MB"
    )
    print("    " + ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in release.phases.items()))
    return elapsed, release


def _delta_bytes(release, tier: str) -> int:
    return release.tiers[tier]["files"][releases.delta_name(release.version)]["bytes"]


def run(k: int, args) -> dict:
    settings.OPTOUT_PUBLIC_DECOYS = k
    started = time.perf_counter()
    if args.keep:
        reset()
    else:
        fill(args.entries, args.rows, args.hosts)
        args.keep = True  # the next k runs on the same blocklist
    print(f"k = {k}: filled {args.entries:,} entries over {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
    key = signing.generate()
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        storage = FileSystemStorage(location=tmp)
        times["first"], release = timed("first release", storage, key)
        for tier in releases.TIERS:
            snap, table = release.tiers[tier]["snapshot"], release.tiers[tier]["snapshot_parquet"]
            print(
                f"  {tier} snapshot: {snap['bytes'] / 1e6:.1f} MB gzip JSON Lines ({snap['bytes'] / snap['entries']:.1f}"
                f" B/entry), {table['bytes'] / 1e6:.1f} MB Parquet ({table['bytes'] / table['entries']:.1f} B/entry)"
            )
        changes = args.entries // 100
        change(changes, changes // 2, "new1")
        times["1%"], _ = timed("after 1% changed", storage, key)
        change(50, 50, "new2")
        times["100"], _ = timed("after 100 changed", storage, key)
        times["resign"], _ = timed("nothing changed (re-sign)", storage, key)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=None, help="dataset rows (default: entries x (largest k + 2) x 2)")
    parser.add_argument("--hosts", type=int, default=4_999, help="hosts (a prime: every host gets entries)")
    parser.add_argument("--decoys", default="0,9", help="comma-separated values of k to run, in order")
    parser.add_argument("--keep", action="store_true", help="reuse the blocklist an earlier run filled")
    parser.add_argument("--fill-only", action="store_true", help="fill the blocklist and stop (then run with --keep)")
    args = parser.parse_args()
    ks = [int(value) for value in args.decoys.split(",")]
    args.rows = args.rows or args.entries * (max(ks) + 2) * 2
    database = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in str(database):
        sys.exit(f"refusing to run on {connection.vendor} database {database!r}: it empties the blocklist")
    call_command("migrate", verbosity=0)
    if args.fill_only:
        started = time.perf_counter()
        fill(args.entries, args.rows, args.hosts)
        print(f"filled {args.entries:,} entries over {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
        return
    results = {k: run(k, args) for k in ks}
    if len(results) > 1:
        base, *others = results
        for k in others:
            ratios = ", ".join(f"{step} {results[k][step] / results[base][step]:.2f}x" for step in results[base])
            print(f"k = {k} against k = {base}, same entries, same run: {ratios}")


if __name__ == "__main__":
    main()
