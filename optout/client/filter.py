"""``filter``: drop the blocked rows of URL lists, streaming, in the input's own format.

Which rows are dropped, and why, is ``batch.Rules`` (the same code Spark and
``datasets`` run): a row goes when its URL is not a plausible web URL
(``bad_url``: fail closed, the client cannot say such a row is not blocked),
when its canonical URL's sha256 is a key (``url``), when its image sha256 is
blocked (``sha256``), or (partner data) when its pHash or PDQ hash is within the
given distance of a blocked one (``phash``, ``pdq``). A JSON Lines row that is not
a JSON object cannot be judged and goes too (``bad_row``). A partner filtering with
the public tier who holds the partner tier too (``state.require_partner``) sees the drops
by decoy keys alone apart (``decoy``; ``batch``'s module docstring).

Formats: Parquet, CSV and JSON Lines, each optionally gzip (not Parquet, which
compresses inside). Rows go through in batches, so memory does not grow with
the input. Each output is written to a temporary file beside it and renamed at
the end: a failed run leaves no output. ``report`` (a CSV path) lists every
dropped row as ``file,row,rule``, rows counted from 0 in each input.

Many inputs (a folder or a glob of shards) go to an output folder under the
same names, ``jobs`` files at a time in worker processes: ``shards``.
"""

import contextlib
import csv
import gzip
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from optout.client import state
from optout.client.batch import KEPT, REASONS, Columns, Rules

BATCH_ROWS = 65_536
# Near-duplicate lookups go faster on big batches: sorted, a million queries probe neighbouring table rows
# (nearby's module docstring), where 65,536 miss the cache at every probe. About 100 MB a batch of img2dataset rows.
NEAR_BATCH_ROWS = 1 << 20
_DICTIONARY_SAMPLE_ROWS = BATCH_ROWS  # rows of the first batch that tell which columns repeat
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class FilterError(Exception):
    """The input cannot be filtered (unknown format, missing column, unreadable file)."""


@dataclass
class Counts:
    read: int = 0
    kept: int = 0
    by_reason: dict = field(
        default_factory=lambda: dict.fromkeys(("url", "sha256", "phash", "pdq", "bad_url", "bad_row"), 0)
    )

    @property
    def dropped(self) -> int:
        return self.read - self.kept

    @property
    def real(self) -> int:
        """Rows dropped by a URL, image or perceptual hash rule: when decoys are counted apart, the real entries."""
        return sum(self.by_reason[name] for name in REASONS if name not in ("bad_url", "decoy"))

    def add(self, other: "Counts") -> None:
        self.read += other.read
        self.kept += other.kept
        for name, count in other.by_reason.items():
            self.by_reason[name] = self.by_reason.get(name, 0) + count

    def summary(self) -> str:
        """The line ``filter`` prints. Decoys are named only when counted (``decoy`` in ``by_reason``: the client
        holds the partner tier too); a public-only client cannot know them and says nothing of them."""
        reasons = ", ".join(f"{name} {count}" for name, count in self.by_reason.items())
        text = f"{self.read} rows read, {self.kept} kept, {self.dropped} dropped ({reasons})"
        if "decoy" in self.by_reason:
            text += (
                f"; {self.real} of the dropped rows are real entries and {self.by_reason['decoy']} decoys only "
                "(public keys that the partner tier does not hold)"
            )
        return text


def detect_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from a file name such as ``part-0.csv.gz``."""
    name = path.name.lower()
    gzipped = name.endswith(".gz")
    fmt = _EXTENSIONS.get(os.path.splitext(name.removesuffix(".gz"))[1])
    if fmt is None:
        raise FilterError(f"cannot tell the format of {path} (use .parquet, .csv or .jsonl, optionally .gz)")
    if fmt == "parquet" and gzipped:
        raise FilterError("a gzipped Parquet file is not supported: Parquet compresses inside")
    return fmt, gzipped


class Progress:
    """One line on a terminal: rows, rows/s and, when the total is known, the ETA. Silent elsewhere."""

    def __init__(self, total: int | None, *, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.rows = 0
        self.started = self._shown = time.monotonic()

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.5:
            self._shown = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self.started)
        rate = self.rows / elapsed
        text = f"{self.rows:,} rows, {rate:,.0f} rows/s"
        if self.total:
            left = (self.total - self.rows) / rate if rate else 0
            text = f"{self.rows:,}/{self.total:,} rows ({100 * self.rows / self.total:.0f}%), {rate:,.0f} rows/s, ETA {left:.0f} s"
        return text

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class _Judge:
    """Applies the rules to batches of one input, counting and reporting."""

    def __init__(
        self, rules: Rules, columns: Columns, name: str, report, progress: Progress | None, near: dict | None = None
    ):
        self.rules, self.columns, self.name, self.report, self.progress = rules, columns, name, report, progress
        self.near = near  # the near-duplicate answers of every row of the input, when they were looked up before
        self.counts = Counts()
        if rules.exact_urls is not None:
            self.counts.by_reason["decoy"] = 0

    def keep(self, batch: pa.RecordBatch, near: Future | None = None) -> np.ndarray:
        """Which rows of ``batch`` to keep; ``near``: a future of its lookups (``Rules.keep``), started earlier."""
        if self.near is not None:
            at = slice(self.counts.read, self.counts.read + batch.num_rows)
            near = {code: found[at] for code, found in self.near.items()}
        reason, _ = self.rules.keep(batch, self.columns, near=near)
        kept = reason == KEPT
        self._count(reason[~kept], np.flatnonzero(~kept))
        self.counts.read += batch.num_rows
        self.counts.kept += int(kept.sum())
        if self.progress is not None:
            self.progress.advance(batch.num_rows)
        return kept

    def _count(self, reasons: np.ndarray, rows: np.ndarray) -> None:
        counted = np.bincount(reasons.astype(np.int64), minlength=len(REASONS))
        for code in np.flatnonzero(counted):  # "decoy" only ever counted when it is in by_reason
            self.counts.by_reason[REASONS[code]] += int(counted[code])
        if self.report is not None:
            base = self.counts.read
            self.report.writerows(
                (self.name, base + int(row), REASONS[code]) for row, code in zip(rows, reasons, strict=True)
            )

    def bad_row(self) -> None:
        if self.report is not None:
            self.report.writerow((self.name, self.counts.read, "bad_row"))
        self.counts.read += 1
        self.counts.by_reason["bad_row"] += 1


def filter_file(
    rules: Rules,
    source: Path,
    out: Path,
    *,
    columns: Columns,
    batch_rows: int = BATCH_ROWS,
    report=None,
    progress: bool = False,
    near: dict | None = None,
) -> Counts:
    """Write the rows of ``source`` that ``rules`` keep to ``out``; returns the counts. Raises ``FilterError``.

    ``report`` is a ``csv.writer`` that gets ``file,row,rule`` for each dropped row. ``near``: for a Parquet
    input, ``rules.near`` of all its rows, looked up already (with other small files: ``shards``).
    """
    source, out = Path(source), Path(out)
    fmt, gzipped = detect_format(source)
    out_fmt, out_gzipped = detect_format(out)
    if out_fmt != fmt:
        raise FilterError(f"the output must be {fmt} like the input (name it .{fmt}, optionally .gz)")
    if out.exists() and source.resolve() == out.resolve():
        raise FilterError("the output would overwrite the input")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    meter = None
    try:
        if fmt == "parquet":
            parquet = _open_parquet(source)
            meter = Progress(parquet.metadata.num_rows) if progress else None
            if near is not None and any(len(found) != parquet.metadata.num_rows for found in near.values()):
                raise ValueError(f"near-duplicate answers for another number of rows than {source} has")
            judge = _Judge(rules, columns, str(source), report, meter, near)
            _parquet(judge, parquet, source, Path(temporary), batch_rows)
        else:
            meter = Progress(None) if progress else None
            judge = _Judge(rules, columns, str(source), report, meter)
            opener = gzip.open if gzipped else open
            out_opener = (lambda p, m: gzip.open(p, m, compresslevel=6)) if out_gzipped else open
            with opener(source, "rb") as reader, out_opener(temporary, "wb") as writer:
                if fmt == "csv":
                    _csv(judge, reader, writer, batch_rows)
                else:
                    _jsonl(judge, reader, writer, batch_rows)
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    finally:
        if meter is not None:
            meter.close()
    return judge.counts


def _column(names: list[str], name: str | None, source) -> int | None:
    if name is None:
        return None
    if name not in names:
        raise FilterError(f"no column {name!r} in {source} (columns: {', '.join(names)})")
    return names.index(name)


def _named(columns: Columns) -> dict[str, str]:
    return {role: name for role, name in columns.__dict__.items() if name is not None}


def _csv(judge: _Judge, reader, writer, batch_rows: int) -> None:
    text_in = io.TextIOWrapper(reader, encoding="utf-8", newline="")
    text_out = io.TextIOWrapper(writer, encoding="utf-8", newline="")
    rows = csv.reader(text_in)
    out = csv.writer(text_out)
    try:
        header = next(rows)
    except StopIteration:
        raise FilterError("the CSV file is empty (no header row)") from None
    out.writerow(header)
    positions = {role: _column(header, name, "the CSV header") for role, name in _named(judge.columns).items()}
    batch: list[list[str]] = []

    def flush():
        arrays = {
            judge.columns.__dict__[role]: pa.array([row[at] if len(row) > at else "" for row in batch], pa.string())
            for role, at in positions.items()
        }
        keep = judge.keep(pa.record_batch(arrays) if batch else _empty(arrays))
        out.writerows(row for row, kept in zip(batch, keep, strict=True) if kept)
        batch.clear()

    try:
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_rows:
                flush()
        if batch:
            flush()
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FilterError(f"the CSV file is unreadable near row {judge.counts.read + len(batch) + 1}: {exc}") from None
    text_out.flush()
    text_out.detach()
    text_in.detach()


def _empty(arrays: dict) -> pa.RecordBatch:
    return pa.record_batch({name: pa.array([], pa.string()) for name in arrays})


def _json_value(value, role: str):
    """A JSON value as the column type ``Rules`` reads: text, or (pHash) an integer as 16 hex digits."""
    if role == "phash" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value & ((1 << 64) - 1):016x}"
    return value if isinstance(value, str) else None


def _jsonl(judge: _Judge, reader, writer, batch_rows: int) -> None:
    lines: list[bytes] = []
    roles = _named(judge.columns)
    values: dict[str, list] = {role: [] for role in roles}

    def flush():
        arrays = {roles[role]: pa.array(column, pa.string()) for role, column in values.items()}
        keep = judge.keep(pa.record_batch(arrays))
        writer.write(b"".join(line for line, kept in zip(lines, keep, strict=True) if kept))
        lines.clear()
        for column in values.values():
            column.clear()

    for raw in reader:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            if not isinstance(row, dict):
                raise ValueError
        except ValueError:
            # Unreadable: it cannot be judged, so it is not passed on (fail closed).
            if lines:
                flush()
            judge.bad_row()
            continue
        lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
        for role, name in roles.items():
            values[role].append(_json_value(row.get(name), role) if role != "url" else (row.get(name) or ""))
        if len(lines) >= batch_rows:
            flush()
    if lines:
        flush()


def _open_parquet(source: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source)
    except (OSError, pa.ArrowException) as exc:
        raise FilterError(f"{source} is not a readable Parquet file: {exc}") from None


def _parquet(judge: _Judge, parquet: pq.ParquetFile, source: Path, temporary: Path, batch_rows: int) -> None:
    schema = parquet.schema_arrow
    for name in _named(judge.columns).values():
        _column(schema.names, name, source)
    batches = parquet.iter_batches(batch_size=batch_rows)
    with ThreadPoolExecutor(1) as ahead:
        early = _early_lookups(judge, source, batch_rows, ahead)
        first = _read_next(batches, source, 0)
        if early is not None and (first is None or early[1] != first.num_rows):
            early = None  # not the same rows: the batch is looked up as any other
        dictionary = _dictionary_columns(parquet, first) if first is not None else False
        options = {"use_dictionary": dictionary, "compression": _compression(parquet)}
        with pq.ParquetWriter(temporary, schema, **options) as writer:
            _write_kept(judge, batches, source, writer, first, early[0] if early is not None else None)


def _early_lookups(judge: _Judge, source: Path, batch_rows: int, pool) -> tuple[Future, int] | None:
    """(a future of the first batch's near-duplicate lookups, its rows), started from its hash columns alone (read
    in a few milliseconds), so that they run while the whole batch is read; None without lookups."""
    names = judge.rules.hash_columns(judge.columns)
    if not names or judge.near is not None:
        return None
    try:
        head = next(pq.ParquetFile(source).iter_batches(batch_size=batch_rows, columns=names), None)
    except (OSError, pa.ArrowException):
        return None  # reading the whole batch says what is wrong
    return None if head is None else (pool.submit(judge.rules.near_of, head, judge.columns), head.num_rows)


def _write_kept(judge: _Judge, batches, source: Path, writer, first, early: Future | None) -> None:
    with ThreadPoolExecutor(1) as io_thread:
        # Reading and writing Parquet release the GIL: one thread reads the next batch and writes the last while
        # this one judges (hashing holds the GIL), so a single file keeps two cores busy.
        written = None
        reading = io_thread.submit(_read_next, batches, source, first.num_rows if first is not None else 0)
        batch = first
        while batch is not None:
            kept = batch.filter(pa.array(judge.keep(batch, early)))
            early = None
            batch = reading.result()  # a damaged row group raises here, and nothing is written (filter_file)
            if written is not None:
                written.result()
            written = io_thread.submit(writer.write_batch, kept)
            if batch is not None:
                reading = io_thread.submit(_read_next, batches, source, judge.counts.read + batch.num_rows)
        if written is not None:
            written.result()


def _read_next(batches, source: Path, before: int) -> pa.RecordBatch | None:
    """The next batch of a Parquet file, or None at its end; ``FilterError`` if the file is damaged there (the
    footer was readable, a row group is not)."""
    try:
        return next(batches, None)
    except (OSError, pa.ArrowException) as exc:
        raise FilterError(f"{source} is unreadable after row {before:,}: {exc}") from None


def _dictionary_columns(parquet: pq.ParquetFile, batch: pa.RecordBatch) -> list[str]:
    """The output's columns to dictionary-encode: those whose values repeat in the first batch (fewer distinct
    values than half its first ``_DICTIONARY_SAMPLE_ROWS`` rows: counting a whole batch of a million distinct URLs
    took longer than looking up their near-duplicates), and nested ones (not counted: left as pyarrow's default,
    encoded).

    Why not all, as pyarrow's default does: a column of distinct values (URLs, captions, hashes: most of a URL
    list) fills the dictionary, falls back to plain encoding and has spent the work for nothing; it was a quarter
    of the time of writing the output (bench/client_filter.py's rows).
    """
    sample = batch.slice(0, _DICTIONARY_SAMPLE_ROWS)
    repeating = set()
    for name in sample.schema.names:
        try:
            distinct = pc.count_distinct(sample.column(name)).as_py()
        except pa.ArrowNotImplementedError:
            repeating.add(name)
            continue
        if 2 * distinct < sample.num_rows:
            repeating.add(name)
    leaves = (parquet.schema.column(i).path for i in range(len(parquet.schema)))
    return [path for path in leaves if path.split(".")[0] in repeating]


def _compression(parquet: pq.ParquetFile) -> dict[str, str]:
    """Each output column's codec: none for those that compression did not shrink in the input (at least 90% of
    their size left in its first row group: hex hashes, which Snappy cannot shorten, cost three quarters of
    Snappy's time for 4% of the bytes), pyarrow's default Snappy for the others. An input written uncompressed
    says nothing of what compression would do, so its columns get Snappy, as before."""
    if not parquet.metadata.num_row_groups:
        return {}
    group = parquet.metadata.row_group(0)
    chunks = (group.column(i) for i in range(group.num_columns))
    return {
        chunk.path_in_schema: "none"
        if chunk.compression != "UNCOMPRESSED" and chunk.total_compressed_size >= 0.9 * chunk.total_uncompressed_size
        else "snappy"
        for chunk in chunks
    }


def batch_rows_for(*, max_distance: int | None = None, max_pdq_distance: int | None = None) -> int:
    """The batch size for rules with these distances: bigger when they look up near-duplicates."""
    return NEAR_BATCH_ROWS if max_distance is not None or max_pdq_distance is not None else BATCH_ROWS


def require_columns(columns: Columns, *, max_distance: int | None, max_pdq_distance: int | None) -> None:
    """Raise ``FilterError`` when a distance is asked for without the column that carries the hash: no row would
    ever be compared, and the caller would believe near-duplicates were dropped."""
    if max_distance is not None and columns.phash is None:
        raise FilterError("--max-distance needs --phash-column")
    if max_pdq_distance is not None and columns.pdq is None:
        raise FilterError("--max-pdq-distance needs --pdq-column")


def require_algorithms(blocklist: state.Blocklist, *, max_distance: int | None, max_pdq_distance: int | None) -> None:
    """Raise ``FilterError`` when a distance is asked for that the blocklist has no hashes for."""
    algorithms = blocklist.manifest.get("algorithms", {})
    for flag, name in ((max_distance, "phash"), (max_pdq_distance, "pdq")):
        if flag is not None and name not in algorithms:
            raise FilterError(f"this blocklist has no {name} hashes: distance filtering needs the partner feed")
