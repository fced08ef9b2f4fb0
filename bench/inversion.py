"""The adversary of the README's threat model, against the public feed: how many removed pictures can it name?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/optout_inversionbench .venv/bin/python bench/inversion.py

Builds a synthetic dataset of --rows URLs (default 1M) over --hosts hosts with a Zipf-like skew, imports it
through the importer, then plays --releases releases: each adds its share of --requests approved removals
(drawn with a skew of their own towards mid-sized "personal" hosts, plus a few URLs in no dataset) and
withdraws some published earlier, and publishes a release. Then the adversary, who holds the URL list and
every public release (snapshots and deltas), hashes the list, rebuilds the candidate set and is scored:

- share of real entries identified (recall) and precision, over the whole history, withdrawals included;
- the same attack on today's feed in the same run: bare real keys (what the exact partner tier carries);
- sharper variants: keys whose line carried an image sha256, and the candidates on the hosts most
  over-represented in the feed relative to the dataset.

It empties the dataset index and the blocklist of the database it runs on, so it refuses a database whose
name has no "bench".
"""

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/optout_inversionbench")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from optout.blocklist import holds, releases, signing  # noqa: E402
from optout.client.canonical import url_sha256  # noqa: E402
from optout.index.importer import Columns, import_files  # noqa: E402

WORDS = ["img", "photos", "uploads", "media", "wp-content", "files", "pics", "gallery", "cdn", "assets"]


def make_urls(rows: int, hosts: int, rng: random.Random) -> tuple[list[str], list[int]]:
    names = [
        f"{rng.choice(['www.', 'img.', 'cdn.', ''])}site{i}.{rng.choice(['com', 'org', 'net', 'de'])}"
        for i in range(hosts)
    ]
    weights = [1 / (rank + 1) ** 1.1 for rank in range(hosts)]  # Zipf-like: a few hosts hold most rows
    host_of = rng.choices(range(hosts), weights=weights, k=rows)
    urls = [
        f"https://{names[h]}/{rng.choice(WORDS)}/{rng.getrandbits(40):x}/{i}{rng.choice(['.jpg', '.png', '.webp', ''])}"
        for i, h in enumerate(host_of)
    ]
    return urls, host_of


def read_keys(storage, tier: str, version: int) -> tuple[set[str], set[str]]:
    """Keys in a release's snapshot and delta, and the keys whose line carried an image sha256."""
    seen, carried = set(), set()
    manifest = json.loads(storage.open(releases.storage_path(tier, releases.manifest_name(version))).read())
    for part in ("snapshot", "delta"):
        with storage.open(releases.storage_path(tier, manifest[part]["path"]), "rb") as handle:
            for line in gzip.decompress(handle.read()).splitlines():
                entry = json.loads(line)
                seen.add(entry["key"])
                if entry.get("sha256"):
                    carried.add(entry["key"])
    return seen, carried


def score(label: str, candidates: set[str], real: set[str]) -> float:
    found = candidates & real
    precision = len(found) / len(candidates) if candidates else 0.0
    print(
        f"  {label}: {len(candidates):,} candidates, {len(found):,} of {len(real):,} real identified "
        f"({len(found) / len(real):.1%}), precision {precision:.4f}"
    )
    return precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--releases", type=int, default=30)
    parser.add_argument("--withdraw", type=float, default=0.2, help="share of published entries later withdrawn")
    args = parser.parse_args()
    database = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql" or "bench" not in str(database):
        sys.exit(f"refusing to run on {connection.vendor} database {database!r}: it empties the index and blocklist")
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE optout_datasetrow, optout_dataset, optout_blocklisthold, optout_publicdecoy, "
            "optout_blocklistentry, optout_release CASCADE"
        )
    rng = random.Random(14)
    k = settings.OPTOUT_PUBLIC_DECOYS

    started = time.perf_counter()
    urls, host_of = make_urls(args.rows, args.hosts, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "urls.parquet"
        pq.write_table(pa.table({"url": urls, "caption": [f"photo {i}" for i in range(len(urls))]}), path)
        import_files("bench-inversion", [path], columns=Columns(url="url"))
    print(f"dataset: {args.rows:,} URLs on {args.hosts:,} hosts imported in {time.perf_counter() - started:.0f} s")

    # Real requests: half from mid-sized hosts (personal sites), half like the dataset, 3% in no dataset.
    by_host: dict[int, list[int]] = {}
    for row, host in enumerate(host_of):
        by_host.setdefault(host, []).append(row)
    personal = [host for host in range(200, 3000) if host in by_host]
    chosen: list[str] = []
    picked: set[int] = set()
    while len(chosen) < args.requests:
        if rng.random() < 0.03:
            chosen.append(f"https://private.example/{rng.getrandbits(64):x}.jpg")
            continue
        row = rng.choice(by_host[rng.choice(personal)]) if rng.random() < 0.5 else rng.randrange(args.rows)
        if row not in picked:
            picked.add(row)
            chosen.append(urls[row])
    real = {url_sha256(url) for url in chosen}

    storage = FileSystemStorage(location=tempfile.mkdtemp(prefix="inversion-"))
    key = signing.generate()
    per_release = -(-len(chosen) // args.releases)
    active: list[int] = []
    started = time.perf_counter()
    for version in range(1, args.releases + 1):
        for i in range((version - 1) * per_release, min(version * per_release, len(chosen))):
            holds.hold(
                holder=f"bench:{i}", url_sha256=url_sha256(chosen[i]), image_sha256=f"{rng.getrandbits(256):064x}"
            )
            active.append(i)
        for i in rng.sample(active, int(len(active) * args.withdraw / args.releases)):
            holds.release_hold(holder=f"bench:{i}")
            active.remove(i)
        releases.publish_release(storage=storage, signing_key=key)
    print(f"{args.releases} releases published in {time.perf_counter() - started:.0f} s (k = {k})")

    # The adversary: hash the URL list, take every key any public release ever carried.
    started = time.perf_counter()
    listed = {url_sha256(url): host for url, host in zip(urls, host_of, strict=True)}
    public, carried, today = set(), set(), set()
    for version in range(1, args.releases + 1):
        seen, lines_with_sha = read_keys(storage, releases.PUBLIC, version)
        public |= seen
        carried |= lines_with_sha
        today |= read_keys(storage, releases.PARTNER, version)[0]  # exact keys: today's public tier
    print(f"adversary: URL list hashed and {args.releases} releases read in {time.perf_counter() - started:.0f} s")
    candidates = public & listed.keys()
    print("attack on today's feed (bare keys, the baseline):")
    score("URL list x all releases", today & listed.keys(), real)
    print(f"attack on the feed with k = {k} decoys (target: precision <= 1/(k+1) = {1 / (k + 1):.4f}):")
    precision = score("URL list x all releases", candidates, real)
    score("lines that carried an image sha256", carried & listed.keys(), real)
    density = Counter(listed[key] for key in candidates)
    rows_per_host = Counter(host_of)
    ranked = sorted(candidates, key=lambda key: density[listed[key]] / rows_per_host[listed[key]], reverse=True)
    score("top 10% by host over-representation", set(ranked[: len(ranked) // 10]), real)
    reals_listed = len(real & listed.keys())
    print(f"cost to builders: {len(candidates) - reals_listed:,} extra rows dropped for {reals_listed:,} real entries "
          f"({(len(candidates) - reals_listed) / reals_listed:.2f} per real entry; at most k = {k})")  # fmt: skip
    print(f"target precision <= {1 / (k + 1):.4f}: {'met' if precision <= 1 / (k + 1) + 1e-9 else 'NOT met'}")


if __name__ == "__main__":
    main()
