"""Benchmark of the client's near-duplicate filter: pHash at distance 8 and PDQ at distance 31, beside a linear scan.

    .venv/bin/python bench/client_nearby.py [--rows 1000000] [--entries 1000000] [--linear-rows 200]
        [--only phash|pdq] [--shards 20]

The compiled kernels are compiled (or loaded from numba's cache) before the
timings, and the time that took is printed first. Needs no database and no feed: the partner blocklist (``--entries`` random
pHashes and PDQ hashes) is built in memory as ``state.load`` returns one. The
rows are a Parquet file shaped like an img2dataset shard with hash columns (url,
caption, pHash as 16 hex digits, PDQ as 64 hex digits); 1% of them are planted
within the distance of a blocked hash, 1% just beyond it. It prints, per
algorithm and in the same run:

- the index alone (``nearby``: build time, then ``near`` over every row's hash)
  in rows/s, on a thread per CPU (the default) and again on one thread;
- the whole ``filter`` of the Parquet file with ``--phash-column`` /
  ``--pdq-column`` (Parquet in and out, URL rules too, the batch size the
  command line uses), in rows/s;
- the same rows as a folder of ``--shards`` Parquet files, filtered by one job
  as ``filter`` filters a folder, in rows/s;
- the baseline: a linear scan of the same blocked hashes (``nearby.linear_near``)
  on the first ``--linear-rows`` rows, in rows/s, and the ratio; the index's
  answer on those rows must equal the scan's.
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

from optout.client import batch, nearby, state  # noqa: E402
from optout.client.filter import batch_rows_for, filter_file  # noqa: E402
from optout.client.shards import Job, filter_many  # noqa: E402
from tests.client.blocklists import make_blocklist  # noqa: E402

DISTANCES = {"phash": 8, "pdq": 31}


def blocklist(phashes: np.ndarray, pdqs: np.ndarray) -> state.Blocklist:
    """A partner blocklist as ``state.load`` returns one, straight from (n, words) uint64 arrays."""
    pdq_values = (
        int.from_bytes(row, "big") for row in np.ascontiguousarray(pdqs.astype(">u8")).view(np.uint8).reshape(-1, 32)
    )
    return make_blocklist(urls=["https://one.example/key.jpg"], phashes=phashes[:, 0].tolist(), pdqs=pdq_values)


def flip(hashes: np.ndarray, bits: int, count: int, rng) -> np.ndarray:
    """``hashes`` (n, words) with ``count`` random bits of each row flipped."""
    out = hashes.copy()
    for row in range(len(out)):
        for bit in rng.choice(bits, size=count, replace=False):
            out[row, bit // 64] ^= np.uint64(1) << np.uint64(63 - bit % 64)
    return out


def hex_column(hashes: np.ndarray) -> pa.Array:
    """(n, words) uint64 as lower-case hex strings, without a Python object per row."""
    raw = np.ascontiguousarray(hashes.astype(">u8")).view(np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    text[:, 0::2], text[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    width = text.shape[1]
    offsets = pa.array(np.arange(0, width * (len(text) + 1), width, dtype=np.int32))
    return pa.StringArray.from_buffers(len(text), offsets.buffers()[1], pa.py_buffer(text.tobytes()))


class Clock:
    """Wall seconds per lap, and this process's CPU seconds in the last lap (the machine may be shared)."""

    def __init__(self):
        self.wall, self.process, self.cpu = time.perf_counter(), time.process_time(), 0.0

    def lap(self) -> float:
        wall, process = time.perf_counter(), time.process_time()
        seconds, self.cpu = wall - self.wall, process - self.process
        self.wall, self.process = wall, process
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--linear-rows", type=int, default=200)
    parser.add_argument("--only", choices=sorted(DISTANCES), default=None)
    parser.add_argument("--shards", type=int, default=20, help="the rows again, cut into this many Parquet files")
    args = parser.parse_args()
    rng = np.random.default_rng(16)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs")
    clock = Clock()
    for make, words in ((nearby.PHashIndex, 1), (nearby.PDQIndex, 4)):  # not in the timings below
        tiny = np.random.default_rng(0).integers(0, 2**64 - 1, size=(100, words), dtype=np.uint64, endpoint=True)
        make(tiny[:, 0] if words == 1 else tiny, 8).near(tiny[:, 0] if words == 1 else tiny)
    print(f"kernels compiled or loaded from numba's cache in {clock.lap():.1f} s")
    for name in [args.only] if args.only else ("phash", "pdq"):
        bits = 64 if name == "phash" else 256
        words = bits // 64
        radius = DISTANCES[name]
        blocked = rng.integers(0, 2**64 - 1, size=(args.entries, words), dtype=np.uint64, endpoint=True)
        rows = rng.integers(0, 2**64 - 1, size=(args.rows, words), dtype=np.uint64, endpoint=True)
        planted = rng.choice(args.rows, size=2 * (args.rows // 100), replace=False)
        near_rows, far_rows = planted[: len(planted) // 2], planted[len(planted) // 2 :]
        sources = blocked[rng.integers(0, args.entries, size=len(planted))]
        rows[near_rows] = flip(sources[: len(near_rows)], bits, radius, rng)
        rows[far_rows] = flip(sources[len(near_rows) :], bits, radius + 1, rng)
        values = blocked[:, 0] if words == 1 else blocked
        queries = rows[:, 0] if words == 1 else rows
        none = np.zeros((0, words), np.uint64)
        loaded = blocklist(blocked if words == 1 else none, blocked if words > 1 else none)
        make = nearby.PHashIndex if words == 1 else nearby.PDQIndex
        clock = Clock()
        index = make(values, radius)
        build = clock.lap()
        found = index.near(queries)
        seconds, cpu = clock.lap(), clock.cpu
        scan_rows = min(args.linear_rows, args.rows)
        scanned = nearby.linear_near(blocked, rows[:scan_rows], radius)
        scan = clock.lap()
        assert found[:scan_rows].tolist() == scanned.tolist(), "the index and the linear scan disagree"
        assert found[near_rows].all() and int(found.sum()) >= len(near_rows)
        index.threads = 1
        clock.lap()
        assert index.near(queries).tolist() == found.tolist()
        one, one_cpu = args.rows / clock.lap(), args.rows / clock.cpu
        fast, slow = args.rows / seconds, scan_rows / scan
        plan = ", ".join(f"{len(t.masks)} probes on {t.width} bits" for t in index.tables)
        print(
            f"{name} at distance {radius}, {args.rows:,} rows against {args.entries:,} blocked: "
            f"index {fast:,.0f} rows/s on {nearby.available_cpus()} threads ({args.rows / cpu:,.0f} rows per CPU "
            f"second of this process; built in {build:.1f} s; {len(index.tables)} tables: {plan})"
        )
        print(
            f"  the same index on 1 thread {one:,.0f} rows/s ({one_cpu:,.0f} per CPU second): "
            f"{nearby.available_cpus()} threads / 1: {fast / one:.2f}x"
        )
        print(
            f"  linear scan (baseline) {slow:,.0f} rows/s on {scan_rows} rows, same answer: True; "
            f"index / linear scan: {fast / slow:,.0f}x"
        )
        del index
        with tempfile.TemporaryDirectory() as temporary:
            root = Path(temporary)
            table = pa.table(
                {
                    "url": pa.array([f"https://img{i % 97}.example-cdn.com/p/{i}.jpg" for i in range(args.rows)]),
                    "caption": pa.array(["a photo"] * args.rows),
                    name: hex_column(rows),
                }
            )
            pq.write_table(table, root / "in.parquet", row_group_size=100_000)
            del table
            kwargs = {"max_distance": radius} if name == "phash" else {"max_pdq_distance": radius}
            rules = batch.Rules(loaded, **kwargs)
            columns = batch.Columns(**{name: name})
            clock = Clock()
            counts = filter_file(
                rules, root / "in.parquet", root / "out.parquet", columns=columns, batch_rows=batch_rows_for(**kwargs)
            )
            seconds = clock.lap()
            assert counts.by_reason[name] == int(found.sum()), counts.summary()
            print(
                f"  filter --{name}-column (Parquet in and out, batches of {batch_rows_for(**kwargs):,}): "
                f"{args.rows / seconds:,.0f} rows/s, {counts.by_reason[name]:,} rows dropped; "
                f"filter / linear scan: {args.rows / seconds / slow:,.0f}x"
            )
            shards = root / "shards"
            shards.mkdir()
            whole = pq.read_table(root / "in.parquet")
            step = -(-args.rows // args.shards)
            for number, start in enumerate(range(0, args.rows, step)):
                pq.write_table(whole.slice(start, step), shards / f"part-{number:05d}.parquet")
            del whole
            job = Job(
                state_dir=root, trust_dir=None, allow_expired=False, release="", columns=columns,
                batch_rows=batch_rows_for(**kwargs), max_distance=kwargs.get("max_distance"),
                max_pdq_distance=kwargs.get("max_pdq_distance"),
            )  # fmt: skip
            (root / "clean").mkdir()
            clock.lap()
            counts = filter_many(rules, job, sorted(shards.iterdir()), root / "clean", jobs=1)
            seconds = clock.lap()
            assert counts.by_reason[name] == int(found.sum()), counts.summary()
            print(
                f"  filter of a folder of {args.shards} shards of {step:,} rows (img2dataset writes 10,000; "
                f"LAION-5B's are about 58,000), one job: {args.rows / seconds:,.0f} rows/s"
            )
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
