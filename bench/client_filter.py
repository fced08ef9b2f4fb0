"""Benchmark of the builder client: ``pull`` of a 100k-entry blocklist, then ``filter`` of a 1M-row Parquet file.

    .venv/bin/python bench/client_filter.py [--rows 1000000] [--entries 100000]

Needs no database: it writes a release (gzip JSON Lines snapshot, manifest and
minisign signature, as ``optout.blocklist.releases`` lays them out) into a temporary
folder, serves it with ``http.server`` on loopback, pulls it with the client,
and filters an img2dataset-like Parquet file (url, caption, sha256) where 5% of
the rows are blocked by URL (written in a non-canonical spelling) and 1% by
image sha256. Prints rows/s for the filter and the time of the pull.
"""

import argparse
import functools
import gzip
import hashlib
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optout.blocklist import signing  # noqa: E402  (pure: no Django)
from optout.client import cli  # noqa: E402
from optout.client.canonical import url_sha256  # noqa: E402


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_release(folder: Path, entries: list[dict], key: signing.SigningKey) -> None:
    entries.sort(key=lambda entry: entry["key"])
    lines = b"".join(canonical_json(entry) + b"\n" for entry in entries)
    snapshot = gzip.compress(lines, compresslevel=6, mtime=0)
    (folder / "snapshot-000001.jsonl.gz").write_bytes(snapshot)
    now = datetime.now(UTC).replace(microsecond=0)
    manifest = {
        "feed": "bench-public",
        "tier": "public",
        "version": 1,
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": (now + timedelta(hours=48)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "previous": None,
        "snapshot": {
            "path": "snapshot-000001.jsonl.gz",
            "sha256": hashlib.sha256(snapshot).hexdigest(),
            "bytes": len(snapshot),
            "entries": len(entries),
        },
        "delta": None,
        "state_sha256": hashlib.sha256(b"".join(e["key"].encode() + b"\n" for e in entries)).hexdigest(),
        "algorithms": {},
        "key_id": key.public_key.key_id_hex,
    }
    body = canonical_json(manifest)
    comment = f"feed:{manifest['feed']} version:1 expires:{manifest['expires']}"
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.json.minisig").write_text(key.sign(body, trusted_comment=comment))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the base class's signature)
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        feed = root / "feed"
        feed.mkdir()
        ids = rng.permutation(args.rows)
        urls = [f"https://img{i % 97}.example-cdn.com/photos/{i // 1000}/{i}.jpg" for i in range(args.rows)]
        sha256s = [hashlib.sha256(b"%d" % i).hexdigest() for i in range(args.rows)]
        blocked_by_url = ids[: args.rows // 20]
        blocked_by_sha = ids[args.rows // 20 : args.rows // 20 + args.rows // 100]
        entries = [
            {"key": url_sha256(urls[i]), "op": "add", "url_sha256": url_sha256(urls[i]), "sha256": None}
            for i in blocked_by_url
        ]
        for i in blocked_by_sha:
            fake = hashlib.sha256(b"elsewhere %d" % i).hexdigest()
            entries.append({"key": fake, "op": "add", "url_sha256": fake, "sha256": sha256s[i]})
        while len(entries) < args.entries:
            fake = hashlib.sha256(b"other %d" % len(entries)).hexdigest()
            entries.append({"key": fake, "op": "add", "url_sha256": fake, "sha256": None})
        for i in blocked_by_url[::2]:  # half the blocked rows spelled differently from the canonical form
            urls[i] = urls[i].replace("https://", "HTTPS://").replace(".com/", ".com:443/")
        write_release(feed, entries, key := signing.generate())
        table = pa.table({"url": urls, "caption": [f"a photo {i}" for i in range(args.rows)], "sha256": sha256s})
        pq.write_table(table, root / "in.parquet", row_group_size=100_000)
        del table, urls, sha256s

        handler = functools.partial(_QuietHandler, directory=str(feed))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state = root / "state"
        try:
            started = time.perf_counter()
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            code = cli.main(["pull", "--feed", base, "--pubkey", key.public_key.to_base64(), "--state", str(state)])
            pull_seconds = time.perf_counter() - started
        finally:
            server.shutdown()
        assert code == 0
        started = time.perf_counter()
        code = cli.main(
            ["filter", str(root / "in.parquet"), "--out", str(root / "out.parquet"), "--sha256-column", "sha256"]
            + ["--state", str(state)]
        )
        seconds = time.perf_counter() - started
        assert code == 0
        kept = pq.ParquetFile(root / "out.parquet").metadata.num_rows
        expected = args.rows - len(blocked_by_url) - len(blocked_by_sha)
        assert kept == expected, (kept, expected)
        print(f"pull of {args.entries} entries: {pull_seconds:.2f} s")
        print(
            f"filter of {args.rows} Parquet rows against {len(entries)} entries: {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s"
        )


if __name__ == "__main__":
    main()
