"""``filter``: drop the blocked rows of a URL list, streaming, in the input's own format.

A row is dropped when its canonical URL's sha256 is a blocklist key, when its
image sha256 is blocked, when (partner data, ``max_distance`` set) its pHash is
within that Hamming distance of a blocked one, or when its URL cannot be
canonicalised at all (fail closed: the client cannot say such a row is not blocked).

Formats: Parquet (needs pyarrow), CSV and JSON Lines, each optionally gzip
(not Parquet, which compresses inside). Rows go through in batches, so memory
does not grow with the input. The output is written to a temporary file beside
``out`` and renamed at the end: a failed run leaves no output.
"""

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from optout.client.canonical import BadURL, canonical_url
from optout.client.state import Blocklist

BATCH_ROWS = 65_536
FORMATS = ("parquet", "csv", "jsonl")
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_MASK64 = (1 << 64) - 1
_PAIRS_PER_STEP = 4_000_000  # row x blocked-pHash pairs compared at once (32 MB of uint64)


class FilterError(Exception):
    """The input cannot be filtered (unknown format, missing column, unreadable file)."""


@dataclass
class Counts:
    read: int = 0
    kept: int = 0
    by_reason: dict = field(default_factory=lambda: {"url": 0, "sha256": 0, "phash": 0, "bad_url": 0, "bad_row": 0})

    @property
    def dropped(self) -> int:
        return self.read - self.kept

    def summary(self) -> str:
        reasons = ", ".join(f"{name} {count}" for name, count in self.by_reason.items())
        return f"{self.read} rows read, {self.kept} kept, {self.dropped} dropped ({reasons})"


def detect_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from a file name such as ``part-0.csv.gz``."""
    name = path.name.lower()
    gzipped = name.endswith(".gz")
    stem = name.removesuffix(".gz")
    fmt = _EXTENSIONS.get(os.path.splitext(stem)[1])
    if fmt is None:
        raise FilterError(f"cannot tell the format of {path} (use .parquet, .csv or .jsonl, optionally .gz)")
    if fmt == "parquet" and gzipped:
        raise FilterError("a gzipped Parquet file is not supported: Parquet compresses inside")
    return fmt, gzipped


class Judge:
    """Decides which rows of a batch to keep."""

    def __init__(self, blocklist: Blocklist, *, max_distance: int | None):
        self.urls = blocklist.urls
        self.sha256s = blocklist.sha256s
        self.max_distance = max_distance
        self.phashes = None
        if max_distance is not None:
            self.phashes = blocklist.phashes()
        self.counts = Counts()

    def keep(self, urls: list, sha256s: list | None, phashes: list | None) -> list[bool]:
        keep = []
        by_reason = self.counts.by_reason
        blocked_urls, blocked_sha256s = self.urls, self.sha256s
        for index, url in enumerate(urls):
            try:
                digest = hashlib.sha256(canonical_url(url).encode("ascii")).digest()
            except BadURL:
                by_reason["bad_url"] += 1
                keep.append(False)
                continue
            if digest in blocked_urls:
                by_reason["url"] += 1
                keep.append(False)
                continue
            if sha256s is not None:
                value = sha256s[index]
                if isinstance(value, bytes) and len(value) == 32:
                    image = value
                elif isinstance(value, str) and _HEX64.fullmatch(value):
                    image = bytes.fromhex(value)
                else:
                    image = None
                if image is not None and image in blocked_sha256s:
                    by_reason["sha256"] += 1
                    keep.append(False)
                    continue
            keep.append(True)
        if phashes is not None and self.phashes is not None and len(self.phashes):
            self._drop_near(keep, phashes)
        self.counts.read += len(urls)
        self.counts.kept += sum(keep)
        return keep

    def _drop_near(self, keep: list[bool], phashes: list) -> None:
        import numpy as np

        rows, values = [], []
        for index, value in enumerate(phashes):
            if not keep[index]:
                continue
            if isinstance(value, int):
                rows.append(index)
                values.append(value & _MASK64)  # a signed 64-bit column holds the same bits
            elif isinstance(value, str) and _HEX16.fullmatch(value.strip()):
                rows.append(index)
                values.append(int(value.strip(), 16))
        if not rows:
            return
        query = np.array(values, dtype=np.uint64)
        step = max(1, _PAIRS_PER_STEP // len(self.phashes))
        for start in range(0, len(query), step):
            part = query[start : start + step]
            distances = np.bitwise_count(part[:, None] ^ self.phashes[None, :])
            near = (distances <= self.max_distance).any(axis=1)
            for offset in np.flatnonzero(near):
                keep[rows[start + offset]] = False
                self.counts.by_reason["phash"] += 1


def filter_file(
    blocklist: Blocklist,
    source: Path,
    out: Path,
    *,
    url_column: str = "url",
    sha256_column: str | None = None,
    phash_column: str | None = None,
    max_distance: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Counts:
    """Write the rows of ``source`` that are not blocked to ``out``; returns the counts. Raises ``FilterError``."""
    source, out = Path(source), Path(out)
    fmt, gzipped = detect_format(source)
    out_fmt, out_gzipped = detect_format(out)
    if out_fmt != fmt:
        raise FilterError(f"the output must be {fmt} like the input (name it .{fmt}, optionally .gz)")
    if out.exists() and source.resolve() == out.resolve():
        raise FilterError("the output would overwrite the input")
    if max_distance is not None and phash_column is None:
        raise FilterError("--max-distance needs --phash-column")
    if max_distance is not None and "phash" not in blocklist.manifest.get("algorithms", {}):
        raise FilterError("this blocklist has no pHashes: distance filtering needs the partner feed")
    judge = Judge(blocklist, max_distance=max_distance)
    columns = {"url": url_column, "sha256": sha256_column, "phash": phash_column}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    try:
        if fmt == "parquet":
            _parquet(judge, source, Path(temporary), columns, batch_rows)
        else:
            opener = gzip.open if gzipped else open
            out_opener = (lambda p, m: gzip.open(p, m, compresslevel=6)) if out_gzipped else open
            with opener(source, "rb") as reader, out_opener(temporary, "wb") as writer:
                if fmt == "csv":
                    _csv(judge, reader, writer, columns, batch_rows)
                else:
                    _jsonl(judge, reader, writer, columns, batch_rows)
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return judge.counts


def _column(names: list[str], name: str | None, source) -> int | None:
    if name is None:
        return None
    if name not in names:
        raise FilterError(f"no column {name!r} in {source} (columns: {', '.join(names)})")
    return names.index(name)


def _csv(judge: Judge, reader, writer, columns: dict, batch_rows: int) -> None:
    text_in = io.TextIOWrapper(reader, encoding="utf-8", newline="")
    text_out = io.TextIOWrapper(writer, encoding="utf-8", newline="")
    rows = csv.reader(text_in)
    out = csv.writer(text_out)
    try:
        header = next(rows)
    except StopIteration:
        raise FilterError("the CSV file is empty (no header row)") from None
    out.writerow(header)
    url_at = _column(header, columns["url"], "the CSV header")
    sha_at = _column(header, columns["sha256"], "the CSV header")
    phash_at = _column(header, columns["phash"], "the CSV header")
    batch: list[list[str]] = []

    def flush():
        urls = [row[url_at] if len(row) > url_at else "" for row in batch]
        shas = [row[sha_at] if len(row) > sha_at else "" for row in batch] if sha_at is not None else None
        phashes = [row[phash_at] if len(row) > phash_at else "" for row in batch] if phash_at is not None else None
        out.writerows(row for row, keep in zip(batch, judge.keep(urls, shas, phashes), strict=True) if keep)
        batch.clear()

    try:
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_rows:
                flush()
        flush()
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FilterError(f"the CSV file is unreadable near row {judge.counts.read + len(batch) + 1}: {exc}") from None
    text_out.flush()
    text_out.detach()
    text_in.detach()


def _jsonl(judge: Judge, reader, writer, columns: dict, batch_rows: int) -> None:
    lines: list[bytes] = []
    urls, shas, phashes = [], [], []
    names = (columns["url"], columns["sha256"], columns["phash"])

    def flush():
        keep = judge.keep(urls, shas if names[1] else None, phashes if names[2] else None)
        writer.write(b"".join(line for line, kept in zip(lines, keep, strict=True) if kept))
        for part in (lines, urls, shas, phashes):
            part.clear()

    for raw in reader:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            if not isinstance(row, dict):
                raise ValueError
        except ValueError:
            # Unreadable: it cannot be judged, so it is not passed on (fail closed).
            judge.counts.read += 1
            judge.counts.by_reason["bad_row"] += 1
            continue
        lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
        urls.append(row.get(names[0]) or "")
        shas.append(row.get(names[1]) if names[1] else None)
        phashes.append(row.get(names[2]) if names[2] else None)
        if len(lines) >= batch_rows:
            flush()
    flush()


def _parquet(judge: Judge, source: Path, temporary: Path, columns: dict, batch_rows: int) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise FilterError("Parquet needs pyarrow: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(source)
    except (OSError, pa.ArrowException) as exc:
        raise FilterError(f"{source} is not a readable Parquet file: {exc}") from None
    schema = parquet.schema_arrow
    for name in columns.values():
        _column(schema.names, name, source)
    with pq.ParquetWriter(temporary, schema) as writer:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            urls = [url or "" for url in batch.column(columns["url"]).to_pylist()]
            shas = batch.column(columns["sha256"]).to_pylist() if columns["sha256"] else None
            phashes = batch.column(columns["phash"]).to_pylist() if columns["phash"] else None
            keep = judge.keep(urls, shas, phashes)
            writer.write_batch(batch.filter(pa.array(keep, type=pa.bool_())))
