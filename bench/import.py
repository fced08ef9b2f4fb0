"""Benchmark of ``import_dataset``: a million LAION-like rows from Parquet into PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/optout_importbench .venv/bin/python bench/import.py

Generates an img2dataset-like Parquet file (url, caption, status, sha256, phash, width, height) in a temporary
directory, imports it through ``optout.index.importer.import_files`` (the code path of the management command), then
imports it again to time the idempotent re-import. The target is at least 100,000 rows/s.

It empties the dataset index of the database it runs on, so it refuses a database whose name has no "bench".
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/optout_importbench")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from optout.index.importer import Columns, import_files  # noqa: E402

HOST_WORDS = "cdn img images static media photos shop blog news assets pics upload content files store".split()
SITES = "pinimg shopify wordpress blogspot flickr etsystatic alicdn squarespace wixstatic tumblr ebayimg".split()
TLDS = "com org net de co.uk fr jp ru it nl com.au ca es pl br".split()
PATH_WORDS = "wp-content uploads images products media photos gallery large thumbs original 2019 2020 2021".split()
EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".JPG", ".gif"]


def make_table(rows: int, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    hosts = [
        f"{rng.choice(HOST_WORDS)}{i % 7 or ''}.{rng.choice(SITES)}{i}.{rng.choice(TLDS)}"
        if i % 3
        else f"www.{rng.choice(SITES)}-{rng.choice(PATH_WORDS)}{i}.{rng.choice(TLDS)}"
        for i in range(5000)
    ]
    host = rng.integers(0, len(hosts), rows)
    word_a = rng.integers(0, len(PATH_WORDS), rows)
    word_b = rng.integers(0, len(PATH_WORDS), rows)
    ids = rng.integers(0, 1 << 40, rows)
    ext = rng.integers(0, len(EXTENSIONS), rows)
    shape = rng.integers(0, 10, rows)
    urls = []
    for i in range(rows):
        scheme = "http" if shape[i] == 0 else "https"
        path = f"{PATH_WORDS[word_a[i]]}/{PATH_WORDS[word_b[i]]}/{ids[i]:x}"
        if shape[i] == 1:
            path += f"-{ids[i] % 997}x{ids[i] % 991}"
        tail = f"?v={ids[i] % 100000}&w=600" if shape[i] == 2 else ""
        if shape[i] == 3:
            path = path.replace("/", "/%7E", 1)  # some escaped characters for the canonicaliser
        urls.append(f"{scheme}://{hosts[host[i]]}/{path}{EXTENSIONS[ext[i]]}{tail}")
    ok = rng.random(rows) < 0.9  # img2dataset leaves the hashes empty for failed downloads
    digests = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    sha256 = pa.array([bytes(d).hex() for d in digests], pa.string())
    phash = pa.array([f"{v:016x}" for v in rng.integers(0, 1 << 64, rows, dtype=np.uint64).tolist()], pa.string())
    nulls = pa.array(~ok)
    return pa.table(
        {
            "url": pa.array(urls, pa.string()),
            "caption": pa.array([f"a photo of thing {i}" for i in range(rows)], pa.string()),
            "status": pa.array(np.where(ok, "success", "failed_to_download")),
            "sha256": pa.compute.if_else(nulls, pa.scalar(None, pa.string()), sha256),
            "phash": pa.compute.if_else(nulls, pa.scalar(None, pa.string()), phash),
            "width": pa.array(rng.integers(64, 4096, rows)),
            "height": pa.array(rng.integers(64, 4096, rows)),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()

    database = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in database:
        sys.exit(f"refusing to run on {connection.vendor} database {database!r}: it empties the dataset index")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part-00000.parquet"
        started = time.monotonic()
        pq.write_table(make_table(args.rows), path)
        print(
            f"generated {args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB Parquet in {time.monotonic() - started:.1f} s"
        )

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE optout_datasetrow CASCADE")
        columns = Columns(url="url", phash="phash", sha256="sha256")
        for label in ("first import", "re-import"):
            summary = import_files("bench-laion", [path], columns=columns, batch_size=args.batch_size)
            print(f"{label}: {summary.elapsed:.2f} s, {summary.rows_per_second:,.0f} rows/s")
            print("  " + summary.report().replace("\n", "\n  "))


if __name__ == "__main__":
    main()
