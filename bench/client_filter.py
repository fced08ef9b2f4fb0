"""Benchmark of the builder client: ``pull`` + load of a release, ``filter`` against it, near-duplicate lookups.

    .venv/bin/python bench/client_filter.py [--rows 10000000] [--entries 1000000] [--reference-rows 1000000]
        [--shards 8]

Needs no database: it writes a release (gzip JSON Lines and Parquet snapshots, manifest and
minisign signature, as ``optout.blocklist.releases`` lays them out) into a
temporary folder, serves it with ``http.server`` on loopback, pulls it with the
client and loads it (the figure for "pull + load"). It then filters an
img2dataset-like Parquet file (url, caption, sha256) where 5% of the rows are
blocked by URL (half of them spelled non-canonically) and 1% by image sha256,
and prints, in the same run:

- the fast path (``batch.Rules``, one process) in rows/s, beside the per-row
  reference path (``batch.reference_keep``, on the first ``--reference-rows``);
- the same rows cut into ``--shards`` Parquet shards, with ``--jobs 1`` and ``--jobs 2``.

Near-duplicate lookups have their own bench, ``bench/client_nearby.py``.
"""

import argparse
import functools
import gzip
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optout.blocklist import signing  # noqa: E402  (pure: no Django)
from optout.client import batch, cli, state  # noqa: E402
from optout.client.filter import filter_file  # noqa: E402
from optout.client.manifest import iso, trusted_comment  # noqa: E402
from optout.client.shards import Job, filter_many  # noqa: E402


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_release(folder: Path, lines: list[bytes], entries: dict, key: signing.SigningKey) -> None:
    keys = sorted(entries)
    snapshot = gzip.compress(b"".join(lines), compresslevel=6, mtime=0)
    (folder / "snapshot-000001.jsonl.gz").write_bytes(snapshot)
    # The columnar snapshot in the server's layout (optout.blocklist.artifacts.PUBLIC_SCHEMA).
    columns = {
        "url_sha256": pa.array([bytes.fromhex(k) for k in keys], pa.binary(32)),
        "sha256": pa.array([bytes.fromhex(entries[k]) if entries[k] else None for k in keys], pa.binary(32)),
    }
    pq.write_table(pa.table(columns), folder / "snapshot-000001.parquet")
    parquet = (folder / "snapshot-000001.parquet").read_bytes()
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = {
        "feed": "bench-public",
        "tier": "public",
        "version": 1,
        "created": iso(now),
        "expires": iso(now + timedelta(hours=48)),
        "previous": None,
        "snapshot": {
            "path": "snapshot-000001.jsonl.gz",
            "sha256": hashlib.sha256(snapshot).hexdigest(),
            "bytes": len(snapshot),
            "entries": len(lines),
        },
        "snapshot_parquet": {
            "path": "snapshot-000001.parquet",
            "sha256": hashlib.sha256(parquet).hexdigest(),
            "bytes": len(parquet),
            "entries": len(lines),
        },
        "delta": None,
        "state_sha256": hashlib.sha256("".join(f"{k}\n" for k in keys).encode()).hexdigest(),
        "algorithms": {},
        "key_id": key.public_key.key_id_hex,
    }
    body = canonical_json(manifest)
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.json.minisig").write_text(key.sign(body, trusted_comment=trusted_comment(manifest)))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the base class's signature)
        pass


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished worker processes: on a machine shared with other work,
    how many cores a run kept busy tells its own limit from the others' load."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def make_rows(count: int, rng) -> pa.Table:
    numbers = pa.array(np.arange(count).astype(str))
    hosts = pa.array(np.char.add("https://img", (np.arange(count) % 97).astype(str)))
    folders = pa.array((np.arange(count) // 1000).astype(str))
    urls = pc.binary_join_element_wise(hosts, ".example-cdn.com/photos/", folders, "/", numbers, ".jpg", "")
    sha256s = pa.array([hashlib.sha256(b"%d" % i).hexdigest() for i in range(count)])
    captions = pc.binary_join_element_wise("a photo ", numbers, "")
    return pa.table({"url": urls, "caption": captions, "sha256": sha256s})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        feed = root / "feed"
        feed.mkdir()
        table = make_rows(args.rows, rng)
        ids = rng.permutation(args.rows)
        by_url, by_sha = ids[: args.rows // 20], ids[args.rows // 20 : args.rows // 20 + args.rows // 100]
        url_list = table.column("url").to_pylist()
        sha_list = table.column("sha256").to_pylist()
        entries = {}
        for i in by_url:
            key = hashlib.sha256(url_list[i].encode()).hexdigest()
            entries[key] = None
        for i in by_sha:
            entries[hashlib.sha256(b"elsewhere %d" % i).hexdigest()] = sha_list[i]
        filler = 0
        while len(entries) < args.entries:
            entries[hashlib.sha256(b"other %d" % filler).hexdigest()] = None
            filler += 1
        keys = sorted(entries)
        lines = [canonical_json({"key": k, "op": "add", "sha256": entries[k], "url_sha256": k}) + b"\n" for k in keys]
        write_release(feed, lines, entries, key := signing.generate())
        del lines
        for i in by_url[::2]:  # half the blocked rows spelled differently from the canonical form
            url_list[i] = url_list[i].replace("https://", "HTTPS://").replace(".com/", ".com:443/")
        table = table.set_column(0, "url", pa.array(url_list))
        del url_list, sha_list
        pq.write_table(table, root / "in.parquet", row_group_size=100_000)

        handler = functools.partial(_QuietHandler, directory=str(feed))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state_dir, trust = root / "state", root / "trust"
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        try:
            pubkey = key.public_key.to_base64()
            command = ["pull", "--feed", base, "--pubkey", pubkey, "--state", str(state_dir), "--trust-dir", str(trust)]
            cpu = time.process_time()
            code, pull_seconds = _timed(lambda: cli.main(command))
        finally:
            server.shutdown()
        assert code == 0
        blocklist, load_seconds = _timed(lambda: state.load(state_dir, trust_dir=trust))
        rules, rules_seconds = _timed(lambda: batch.Rules(blocklist))
        cpu = time.process_time() - cpu  # with the loopback server's thread, which serves the files
        print(
            f"pull of {args.entries:,} entries: {pull_seconds:.2f} s; load {load_seconds:.2f} s; rules {rules_seconds:.2f} s"
        )
        print(
            f"pull + load: {pull_seconds + load_seconds + rules_seconds:.2f} s, {cpu:.2f} CPU seconds of this process "
            "(target 3 s at 1M entries)"
        )

        columns = batch.Columns(sha256="sha256")
        cpu = time.process_time()
        counts, seconds = _timed(lambda: filter_file(rules, root / "in.parquet", root / "out.parquet", columns=columns))
        cpu = time.process_time() - cpu
        expected = args.rows - len(by_url) - len(by_sha)
        assert counts.kept == expected, (counts.summary(), expected)
        fast = args.rows / seconds
        print(
            f"filter (fast path, 1 process), {args.rows:,} Parquet rows against {len(entries):,} entries: "
            f"{seconds:.2f} s, {fast:,.0f} rows/s ({args.rows / cpu:,.0f} rows per CPU second of this process)"
        )

        sample = pq.ParquetFile(root / "in.parquet").iter_batches(batch_size=min(args.reference_rows, args.rows))
        record = next(sample)
        reference_seconds, cpu = time.perf_counter(), time.process_time()
        reference = batch.reference_keep(blocklist, record, columns)
        _timed(
            lambda: pq.write_table(
                pa.Table.from_batches([record.filter(pa.array(reference == batch.KEPT))]), root / "ref.parquet"
            )
        )
        reference_seconds, cpu = time.perf_counter() - reference_seconds, time.process_time() - cpu
        same = (rules.keep(record, columns)[0] == reference).all()
        slow = record.num_rows / reference_seconds
        print(
            f"filter (per-row reference), first {record.num_rows:,} rows: {slow:,.0f} rows/s "
            f"({record.num_rows / cpu:,.0f} rows per CPU second); identical output: {bool(same)}"
        )
        print(f"fast / reference: {fast / slow:.2f}x (target 2.5x; and 1M rows/s)")

        shards = root / "shards"
        shards.mkdir()
        step = -(-args.rows // args.shards)
        for number, start in enumerate(range(0, args.rows, step)):
            pq.write_table(table.slice(start, step), shards / f"part-{number:05d}.parquet", row_group_size=100_000)
        del table
        sources = sorted(shards.iterdir())
        job = Job(
            state_dir=state_dir,
            trust_dir=trust,
            allow_expired=False,
            release=rules.release,
            max_distance=None,
            max_pdq_distance=None,
            columns=columns,
            batch_rows=65_536,
        )
        timings = {}
        for jobs in (1, 2):
            out = root / f"clean-{jobs}"
            out.mkdir()
            cpu = _cpu_with_children()
            counts, timings[jobs] = _timed(lambda: filter_many(rules, job, sources, out, jobs=jobs))  # noqa: B023
            cpu = _cpu_with_children() - cpu
            assert counts.kept == expected
            print(
                f"filter of {len(sources)} shards with --jobs {jobs}: {timings[jobs]:.2f} s, "
                f"{args.rows / timings[jobs]:,.0f} rows/s, {cpu / timings[jobs]:.2f} cores busy"
            )
        print(f"--jobs 2 / --jobs 1: {timings[1] / timings[2]:.2f}x (target 1.7x)")

        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
