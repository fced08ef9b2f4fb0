"""Benchmark of monitoring: a million new rows with hash columns re-scanned against 10,000 monitored references.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/optout_afterbench .venv/bin/python bench/monitor.py

1. Generates an img2dataset-like Parquet file (url, sha256, phash, pdq, pdq_quality) with a few hundred rows
   planted near monitored references (a few bits off in pHash and PDQ), in a temporary directory.
2. Makes 10,000 published cases whose requesters asked for monitoring, each with one reference picture
   and its variants: ``--variants`` signal sets per picture (by default as many as
   ``optout.imaging.REFERENCE_VARIANTS`` holds, 77: the picture, 7 dihedral turns, 69 crops), stored under
   the descriptors verification compares.
3. Imports the file as a new dataset with monitoring off (the cases' monitoring stopped) and on, in the
   same run (``--repeats`` times each, alternating), through ``optout.index.importer.import_files`` (the
   code path of the management command, including the ``rows_gained_signals`` hook that queues the scan).
4. Re-scans the monitored import with ``requests_app.monitoring.scan_dataset`` chunk by chunk, as the
   ``scan_new_rows`` task does (the references' in-memory index built once, in the first chunk), and checks
   that every planted copy was found (each near one variant of its picture, any of them) and that the
   other rows found are within a threshold by chance.

The machine may be shared: the load average is printed beside the figures.

Targets: the re-scan takes at most 10 minutes, and the import is at most 10% slower with monitoring on.
It empties the dataset index and the removal requests of the database it runs on, so it refuses a
database whose name has no "bench".
"""

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/optout_afterbench")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Queued scans go to the file broker of a temporary folder: the bench runs the scan itself, in process.
os.environ.setdefault("CELERY_BROKER_URL", "filesystem://")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from optout import imaging  # noqa: E402
from optout.imaging import hashbits  # noqa: E402
from optout.index.importer import Columns, import_files  # noqa: E402
from optout.models import Dataset  # noqa: E402
from requests_app import monitoring  # noqa: E402
from requests_app.models import ReferenceSignal, RemovalItem, RemovalRequest, RemovalState  # noqa: E402

# The URLs of bench/import.py (one definition of what LAION-like rows look like).
_spec = importlib.util.spec_from_file_location("bench_import", Path(__file__).with_name("import.py"))
_bench_import = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench_import)


def flip(value: int, bits: int, count: int, rng: np.random.Generator) -> int:
    for position in rng.choice(bits, size=count, replace=False):
        value ^= 1 << int(position)
    return value


def make_references(count: int, variants: int, seed: int) -> list[list[tuple[int, int]]]:
    """Per monitored picture, its signal sets as (pHash, PDQ); variants are a few bits off the first."""
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(count):
        phash = int(rng.integers(0, 1 << 63)) << 1 | int(rng.integers(0, 2))
        pdq = int.from_bytes(rng.bytes(32), "big")
        sets = [(phash, pdq)] + [
            (flip(phash, 64, 20, rng), flip(pdq, 256, 80, rng)) for _ in range(variants - 1)
        ]  # unlike one another: a mirrored picture's hashes are far from the original's
        pictures.append(sets)
    return pictures


def make_table(rows: int, pictures, planted: int, seed: int) -> tuple[pa.Table, set[int]]:
    """The dataset file, and the row numbers of the planted copies."""
    rng = np.random.default_rng(seed)
    base = _bench_import.make_table(rows, seed=seed)
    phash = [f"{v:016x}" for v in rng.integers(0, 1 << 64, rows, dtype=np.uint64).tolist()]
    pdq = [rng.bytes(32).hex() for _ in range(rows)]
    planted_rows = set(rng.choice(rows, size=planted, replace=False).tolist())
    for n, row in enumerate(sorted(planted_rows)):
        sets = pictures[n % len(pictures)]
        ref_phash, ref_pdq = sets[n % len(sets)]  # near one of the picture's variants
        phash[row] = f"{flip(ref_phash, 64, 3, rng):016x}"
        pdq[row] = f"{flip(ref_pdq, 256, 12, rng):064x}"
    table = pa.table(
        {
            "url": base["url"],
            "sha256": base["sha256"],
            "phash": pa.array(phash, pa.string()),
            "pdq": pa.array(pdq, pa.string()),
            "pdq_quality": pa.array(np.full(rows, 90)),
        }
    )
    return table, planted_rows


def make_cases(pictures) -> None:
    now = timezone.now()
    removals = RemovalRequest.objects.bulk_create(
        RemovalRequest(
            case=f"OPT-BNCH-{n // 10000:04d}-{n % 10000:04d}",
            secret_hmac="0" * 64,
            state=RemovalState.PUBLISHED,
            created_at=now,
            state_changed_at=now,
            monitor_until=now + timedelta(days=365),
        )
        for n in range(len(pictures))
    )
    base_key = imaging.descriptor_key()

    def name(v: int) -> str:  # more signal sets than the server makes are named for the bench
        return imaging.REFERENCE_VARIANTS[v] if v < len(imaging.REFERENCE_VARIANTS) else f"bench-{v}"

    ReferenceSignal.objects.bulk_create(
        (
            ReferenceSignal(
                removal=removal,
                image_index=0,
                source=ReferenceSignal.Source.CLIENT,
                phash=hashbits.phash_to_hex(phash),
                pdq=hashbits.pdq_to_hex(pdq),
                pdq_quality=90,
                sha256=f"{n:064x}" if v == 0 else "",  # a variant carries none
                variant=name(v),
                descriptor_key=imaging.variant_descriptor(base_key, name(v)),
            )
            for n, (removal, sets) in enumerate(zip(removals, pictures, strict=True))
            for v, (phash, pdq) in enumerate(sets)
        ),
        batch_size=10_000,
    )


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument(
        "--variants",
        type=int,
        default=len(imaging.REFERENCE_VARIANTS),
        help="Signal sets per reference picture: the picture and its variants (default: as many as the server makes).",
    )
    parser.add_argument("--planted", type=int, default=200, help="Rows that are copies of monitored pictures.")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1, help="Imports with monitoring off, and on, each.")
    args = parser.parse_args()

    database = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in database:
        sys.exit(f"refusing to run on {connection.vendor} database {database!r}: it empties the index and cases")
    call_command("migrate", verbosity=0)

    pictures = make_references(args.references, args.variants, seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part-00000.parquet"
        started = time.monotonic()
        table, planted = make_table(args.rows, pictures, args.planted, seed=5)
        pq.write_table(table, path)
        print(f"generated {args.rows:,} rows ({len(planted)} planted copies) in {time.monotonic() - started:.1f} s")

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE optout_datasetrow, optout_dataset, requests_app_monitormark CASCADE")
            cursor.execute("TRUNCATE requests_app_removalrequest CASCADE")
        columns = Columns(url="url", phash="phash", pdq="pdq", pdq_quality="pdq_quality", sha256="sha256")

        started = time.monotonic()
        make_cases(pictures)
        signal_sets = ReferenceSignal.objects.count()
        print(
            f"made {args.references:,} monitored cases ({signal_sets:,} signal sets) in {time.monotonic() - started:.1f} s"
        )
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")  # the cases' writes are not flushed during the first import

        # Off and on alternate (off, on, on, off, ...), so a machine whose load drifts favours neither.
        # "Off": the same cases, with their monitoring stopped (the index of watched references is empty).
        cases = RemovalRequest.objects.filter(case__startswith="OPT-BNCH-")
        until = timezone.now() + timedelta(days=365)
        seconds: dict[str, list[float]] = {"off": [], "on": []}
        last_on = ""
        for n in range(2 * args.repeats):
            mode = ("off", "on")[(n + n // 2) % 2]
            cases.update(monitor_until=until if mode == "on" else None)
            started = time.monotonic()  # the import and its hook that queues the scan
            summary = import_files(f"bench-monitor-{mode}-{n}", [path], columns=columns, batch_size=args.batch_size)
            seconds[mode].append(time.monotonic() - started)
            print(
                f"import, monitoring {mode + ':':4} {seconds[mode][-1]:.2f} s, {summary.inserted:,} rows, "
                f"load average {_load()}"
            )
            if mode == "on":
                last_on = f"bench-monitor-{mode}-{n}"
        cases.update(monitor_until=until)
        off, on = min(seconds["off"]), min(seconds["on"])
        print(
            f"  import slowdown with monitoring on: {on / off - 1:+.1%}, best of {args.repeats} (target at most +10%)"
        )

        dataset_id = Dataset.objects.get(name=last_on).pk
        started, cpu = time.monotonic(), time.process_time()
        watched, rows, found, chunks, built = None, 0, 0, 0, None
        while True:
            result = monitoring.scan_dataset(dataset_id, watched=watched)
            watched, rows, found, chunks = result.watched, rows + result.rows, found + result.found, chunks + 1
            built = built or time.monotonic() - started
            if result.done:
                break
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        print(
            f"re-scan: {rows:,} new rows against {args.references:,} references ({signal_sets:,} signal sets) "
            f"in {elapsed:.1f} s ({cpu:.1f} s of CPU in this process; {chunks} chunks, {rows / elapsed:,.0f} rows/s;"
            f" target at most 600 s); load average {_load()}"
        )
        print(f"  of which the first chunk, with the references read and indexed: {built:.1f} s")
        later = RemovalItem.objects.filter(added_at__isnull=False)
        found_urls = set(later.values_list("url", flat=True))
        planted_urls = {table["url"][row].as_py() for row in planted}
        # Random 64-bit hashes fall within 8 bits of one another by chance: about 3e-10 of pairs, so ~3 in
        # 1e6 x 1e4. Such rows are real matches at the threshold, and must be within it.
        chance = later.exclude(url__in=planted_urls)
        genuine = all(
            (ph is not None and ph <= settings.OPTOUT_PHASH_THRESHOLD)
            or (pdq is not None and pdq <= settings.OPTOUT_PDQ_THRESHOLD)
            for ph, pdq in chance.values_list("phash_distance", "pdq_distance")
        )
        print(
            f"  copies found: {found}: every planted one ({planted_urls <= found_urls}, {len(planted)}), "
            f"plus {chance.count()} random rows within a threshold by chance (all within it: {genuine})"
        )
        print(f"  cases back in review: {RemovalRequest.objects.filter(state=RemovalState.IN_REVIEW).count()}")
        again = monitoring.scan_dataset(dataset_id)
        print(f"  a second scan reads {again.rows} rows and finds {again.found}; load average {_load()}")


if __name__ == "__main__":
    main()
