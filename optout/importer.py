"""Bulk import of dataset URL lists (Parquet, CSV, JSON Lines) into the dataset index.

``import_files`` streams each file in batches of Arrow record batches, so memory stays flat however large the
file is. Per batch:

1. checks the URL and the optional hash columns, vectorised with Arrow compute (trimming, emptiness, length,
   scheme, hex syntax, hex -> signed 64-bit words) -- only the URL canonicalisation runs per row in Python;
2. writes the good rows: on PostgreSQL by ``COPY`` into a temporary table followed by
   ``INSERT ... SELECT ... ON CONFLICT (dataset_id, url_sha256) DO NOTHING``; elsewhere (SQLite) by
   ``bulk_create(ignore_conflicts=True)``. One transaction per batch.

Reading and checking run in a helper thread one batch ahead of the writer, so Python work on the next batch
overlaps with the database working on this one (psycopg2 releases the GIL while it waits for the server).

Decisions worth knowing:

- **Idempotent and resumable.** Rows are unique per (dataset, url_sha256); a row whose canonical URL is
  already in the dataset, or repeats within the file, is skipped and counted as *already present*. Each batch
  commits on its own, so an interrupted import is resumed by running the same command again: what was
  committed is skipped, the rest is inserted. Existing rows are never updated (a re-import with more hash
  columns does not fill in hashes of rows already present).
- **Bad rows are skipped, not fatal.** A row is bad when its URL is missing, longer than ``MAX_URL_LENGTH``,
  not http(s), rejected by the canonicaliser, or when a hash cell is present but malformed (wrong length,
  not hex, PDQ quality not an integer 0-100); a malformed hash hints at a wrong column or a corrupt row, so
  the whole row is left out rather than imported half-known. Empty or null hash cells are fine: the hash is
  simply unknown (img2dataset leaves them empty for failed downloads). Malformed CSV records and JSON lines
  are bad rows too. The summary counts bad rows by reason and keeps a few examples.
- **PDQ needs its quality.** PDQ hashes below quality 50 must be discarded, so ``pdq_column`` requires
  ``pdq_quality_column``; without the score we could not tell. PDQ words and quality are stored only when
  the quality is at least 50 (below that the row is imported with PDQ unknown).
- **Imported hashes are labelled.** Rows that got a hash from the file point to a ``HashDescriptor`` with key
  ``import:<columns>``: the hashes came from the file, computed by an unknown library and version, so they
  may not be comparable with the ones this system computes. ``hashed_at`` stays empty, because we did not
  compute them.
- **Row numbers** in examples count data records from 1 (the CSV header and blank JSON lines are not
  counted); malformed CSV records are reported by physical line number.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import connection, transaction
from tqdm import tqdm

from optout.client.canonical import BadURL, url_sha256
from optout.models import Dataset, DatasetRow, HashDescriptor

DEFAULT_BATCH_SIZE = 50_000
MAX_URL_LENGTH = 4096  # longer "URLs" in scraped lists are data: URIs or junk, not fetchable images
MIN_PDQ_QUALITY = 50
MAX_EXAMPLES = 10
FORMATS = ("auto", "parquet", "csv", "jsonl")

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_JSONL_BLOCK_BYTES = 8 << 20

# The roles a file column can play; files are read into record batches whose columns carry these names.
URL, PHASH, PDQ, PDQ_QUALITY, SHA256 = "url", "phash", "pdq", "pdq_quality", "sha256"

# Bad-row reasons, in the order they are checked (a row is reported under the first that applies).
MISSING_URL = "missing URL"
URL_TOO_LONG = "URL too long"
NOT_HTTP = "not an http(s) URL"
BAD_URL = "bad URL"
BAD_PHASH = "bad pHash hex"
BAD_PDQ = "bad PDQ hex"
BAD_PDQ_QUALITY = "bad PDQ quality"
BAD_SHA256 = "bad sha256 hex"
MALFORMED_RECORD = "malformed record"
_REASONS = (None, MISSING_URL, URL_TOO_LONG, NOT_HTTP, BAD_PHASH, BAD_PDQ, BAD_PDQ_QUALITY, BAD_SHA256, BAD_URL)


class DatasetImportError(Exception):
    """The import cannot start or go on: a missing file or column, an unknown format, bad options."""


@dataclass(frozen=True)
class Columns:
    """Which file column plays which role; ``None`` means the file has no such column."""

    url: str = "url"
    phash: str | None = None
    pdq: str | None = None
    pdq_quality: str | None = None
    sha256: str | None = None

    def by_role(self) -> dict[str, str]:
        roles = {URL: self.url, PHASH: self.phash, PDQ: self.pdq, PDQ_QUALITY: self.pdq_quality, SHA256: self.sha256}
        return {role: column for role, column in roles.items() if column}

    def descriptor_key(self) -> str | None:
        hashes = [f"{role}={column}" for role, column in self.by_role().items() if role != URL]
        return ("import:" + ",".join(hashes))[:200] if hashes else None


@dataclass(frozen=True)
class BadRow:
    path: str
    where: str  # "row 12" or "line 13"
    reason: str
    url: str


@dataclass
class ImportSummary:
    dataset: str
    rows_read: int = 0
    inserted: int = 0
    already_present: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0

    def add_bad(self, path: str, where: str, reason: str, url: str) -> None:
        self.bad[reason] += 1
        self.add_example(path, where, reason, url)

    def add_example(self, path: str, where: str, reason: str, url: str) -> None:
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(BadRow(path, where, reason, _shorten(url)))

    def report(self) -> str:
        lines = [
            f"Dataset {self.dataset}: {self.rows_read} rows read, {self.inserted} inserted, "
            f"{self.already_present} already present, {self.bad_total} bad "
            f"in {self.elapsed:.1f} s ({self.rows_per_second:,.0f} rows/s)."
        ]
        for reason, count in sorted(self.bad.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  bad, {reason}: {count}")
        if self.examples:
            lines.append("Examples of bad rows:")
            lines.extend(f"  {bad.path} {bad.where}: {bad.reason}: {bad.url}" for bad in self.examples)
        return "\n".join(lines)


def import_files(
    name: str,
    paths: Iterable[str | os.PathLike],
    *,
    columns: Columns = Columns(),
    release: str | None = None,
    description: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    file_format: str = "auto",
    progress: bool = False,
) -> ImportSummary:
    """Import the URL lists in ``paths`` into the dataset ``name`` (created if missing) and summarise.

    ``release`` and ``description``, when given, are set on the dataset. Raises ``DatasetImportError`` before
    writing anything when an option is wrong, a file is missing, its format unknown or its URL column absent.
    """
    started = time.monotonic()
    try:
        validate_slug(name)
    except ValidationError:
        raise DatasetImportError(f"dataset name {name!r} is not a slug (letters, digits, - and _)") from None
    if file_format not in FORMATS:
        raise DatasetImportError(f"unknown format {file_format!r}; choose one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise DatasetImportError("the batch size must be at least 1")
    if columns.pdq and not columns.pdq_quality:
        raise DatasetImportError(
            "a PDQ column needs its quality column: PDQ hashes below quality 50 must be discarded, "
            "and without the score we cannot tell which"
        )
    sources = [_Source.open(Path(path), file_format, columns) for path in paths]
    if not sources:
        raise DatasetImportError("no file to import")

    dataset, created = Dataset.objects.get_or_create(
        name=name, defaults={"release": release or "", "description": description or ""}
    )
    if not created:
        changes = {key: value for key, value in (("release", release), ("description", description)) if value}
        if changes:
            Dataset.objects.filter(pk=dataset.pk).update(**changes)
    descriptor_id = _descriptor_id(columns)

    summary = ImportSummary(dataset=name)
    writer = _writer_for(dataset.pk)
    with ExitStack() as stack:
        for source in sources:
            stack.enter_context(source)
        bar = stack.enter_context(
            tqdm(
                total=sum(source.progress_total for source in sources),
                unit=sources[0].progress_unit if len({s.progress_unit for s in sources}) == 1 else "it",
                unit_scale=True,
                disable=not progress,
                dynamic_ncols=True,
            )
        )
        batches = itertools.chain.from_iterable(
            source.prepared_batches(batch_size, descriptor_id, summary) for source in sources
        )
        for prepared in _read_ahead(batches):
            summary.rows_read += prepared.rows
            if prepared.table is not None and prepared.table.num_rows:
                inserted = writer(prepared.table)
                summary.inserted += inserted
                summary.already_present += prepared.table.num_rows - inserted
            bar.update(prepared.progress)
    summary.elapsed = time.monotonic() - started
    return summary


# --- Reading -------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    table: pa.Table | None  # the good rows, in the staging layout
    rows: int  # records read, good or bad
    progress: int  # progress-bar units done (rows or compressed bytes)


class _Source:
    """One input file: its format, its compression and a reader of role-named record batches."""

    def __init__(self, path: Path, fmt: str, gzipped: bool, columns: Columns):
        self.path = path
        self.format = fmt
        self.gzipped = gzipped
        self.columns = columns
        self._stack = ExitStack()
        self._malformed: list[tuple[str, str]] = []  # (where, text) of records the parser rejected
        if fmt == "parquet":
            self.progress_unit = "rows"
            self._open_parquet()
        else:
            self.progress_unit = "B"
            self.progress_total = path.stat().st_size
            self._check_header()

    @classmethod
    def open(cls, path: Path, file_format: str, columns: Columns) -> _Source:
        try:
            with path.open("rb") as raw:
                head = raw.read(4)
        except OSError as exc:
            raise DatasetImportError(f"{path}: cannot read: {exc.strerror or exc}") from None
        gzipped = head[:2] == _GZIP_MAGIC
        if file_format == "auto":
            file_format = _guess_format(path, head, gzipped)
        return cls(path, file_format, gzipped, columns)

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    # Parquet needs random access (its footer comes last), so a gzipped Parquet file is unpacked to a
    # temporary file first; Parquet compresses its pages itself, so such files are rare.
    def _open_parquet(self) -> None:
        source = self.path
        if self.gzipped:
            spool = self._stack.enter_context(tempfile.NamedTemporaryFile(suffix=".parquet"))
            with gzip.open(self.path, "rb") as packed:
                shutil.copyfileobj(packed, spool, 1 << 20)
            spool.flush()
            source = spool.name
        try:
            self._parquet = self._stack.enter_context(pq.ParquetFile(source))
        except (pa.ArrowException, OSError) as exc:
            self._stack.close()
            raise DatasetImportError(f"{self.path}: not a readable Parquet file: {exc}") from None
        self._require(self._parquet.schema_arrow.names)
        self.progress_total = self._parquet.metadata.num_rows

    def _check_header(self) -> None:
        with self._open_text() as stream:
            if self.format == "csv":
                first = stream.readline().decode("utf-8-sig", errors="replace")
                header = next(csv.reader([first]), [])
                self._require(header)
            else:
                # JSON Lines has no header: look for the URL key in the first records.
                seen = set()
                for line in itertools.islice(stream, 1000):
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        seen.update(record)
                if seen:
                    self._require(seen)

    def _require(self, names) -> None:
        missing = [column for column in self.columns.by_role().values() if column not in names]
        if missing:
            shown = ", ".join(sorted(map(str, names))[:20])
            raise DatasetImportError(f"{self.path}: no column {', '.join(map(repr, missing))} (columns: {shown})")

    def _open_text(self):
        return gzip.open(self.path, "rb") if self.gzipped else self.path.open("rb")

    def prepared_batches(self, batch_size: int, descriptor_id: int | None, summary: ImportSummary):
        first_row = 0
        for batch, progress, numbers in self._batches(batch_size):
            table = _prepare(batch, first_row, numbers, descriptor_id, summary, str(self.path))
            first_row += batch.num_rows
            rows = batch.num_rows + len(self._malformed)
            for where, text in self._malformed:
                summary.add_bad(str(self.path), where, MALFORMED_RECORD, text)
            self._malformed.clear()
            yield _Prepared(table, rows, progress)
        if self._malformed:  # records the parser rejected after the last batch
            for where, text in self._malformed:
                summary.add_bad(str(self.path), where, MALFORMED_RECORD, text)
            yield _Prepared(None, len(self._malformed), 0)
            self._malformed.clear()

    def _batches(self, batch_size: int) -> Iterator[tuple[pa.RecordBatch, int, np.ndarray | None]]:
        """Role-named batches, with the progress each one makes and, when not consecutive, their row numbers."""
        roles = self.columns.by_role()
        needed = list(dict.fromkeys(roles.values()))
        if self.format == "parquet":
            for batch in self._parquet.iter_batches(batch_size=batch_size, columns=needed):
                yield _by_role(batch, roles), batch.num_rows, None
        elif self.format == "csv":
            yield from self._csv_batches(batch_size, roles, needed)
        else:
            yield from self._jsonl_batches(batch_size, roles, needed)

    def _csv_batches(self, batch_size: int, roles: dict[str, str], needed: list[str]):
        raw = self._stack.enter_context(pa.OSFile(str(self.path), "rb"))
        stream = pa.CompressedInputStream(raw, "gzip") if self.gzipped else raw

        def reject(row) -> str:
            self._malformed.append((f"line {row.number}" if row.number else "a line", row.text))
            return "skip"

        reader = pa_csv.open_csv(
            stream,
            # Arrow's CSV block is in bytes: about 200 bytes a LAION row keeps batches near batch_size rows.
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=max(1 << 16, min(batch_size * 200, 1 << 28))),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=reject),
            convert_options=pa_csv.ConvertOptions(
                include_columns=needed, column_types={column: pa.string() for column in needed}
            ),
        )
        done = 0
        for batch in reader:
            position = raw.tell()
            yield _by_role(batch, roles), position - done, None
            done = position

    def _jsonl_batches(self, batch_size: int, roles: dict[str, str], needed: list[str]):
        raw = self._stack.enter_context(self.path.open("rb"))
        stream = self._stack.enter_context(gzip.open(raw, "rb")) if self.gzipped else raw
        # Hash columns are read as text; the quality column keeps whatever type the JSON gives it.
        schema = pa.schema([(column, pa.string()) for column in needed if column != self.columns.pdq_quality])
        done = 0
        record = 0
        while lines := list(itertools.islice(stream, batch_size)):
            records = [line for line in lines if line.strip()]
            numbers = np.arange(record + 1, record + 1 + len(records))
            batch = _read_jsonl_block(records, schema, roles)
            if batch is None:
                batch, numbers = self._parse_jsonl_lines(records, roles, record)
            record += len(records)
            position = raw.tell()
            yield batch, position - done, numbers
            done = position

    def _parse_jsonl_lines(self, records: list[bytes], roles: dict[str, str], record: int):
        """One line at a time, for a block Arrow refused: rejects malformed lines, stringifies odd values."""
        values: dict[str, list] = {role: [] for role in roles}
        numbers = []
        for number, line in enumerate(records, start=record + 1):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                self._malformed.append((f"row {number}", line.decode("utf-8", "replace").strip()))
                continue
            numbers.append(number)
            for role, column in roles.items():
                value = obj.get(column)
                values[role].append(value if value is None or isinstance(value, str) else json.dumps(value))
        batch = pa.RecordBatch.from_pydict({role: pa.array(column, pa.string()) for role, column in values.items()})
        return batch, np.array(numbers, dtype=np.int64)


def _read_jsonl_block(records: list[bytes], schema: pa.Schema, roles: dict[str, str]) -> pa.RecordBatch | None:
    """Parse JSON lines with Arrow; ``None`` when Arrow refuses them (a malformed line, a value of odd type)."""
    data = b"\n".join(line.rstrip(b"\r\n") for line in records) + b"\n"
    try:
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1)),
            # "infer" keeps fields outside the schema, such as the quality column, whose type (number or text)
            # is accepted either way.
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
    except pa.ArrowException:
        return None
    if table.num_rows != len(records):
        return None
    for column in dict.fromkeys(roles.values()):
        if column not in table.column_names:  # absent from every line of this block
            table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
    return _by_role(table.combine_chunks(), roles)


def _guess_format(path: Path, head: bytes, gzipped: bool) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes.pop()
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    if head == _PARQUET_MAGIC:
        return "parquet"
    if gzipped:
        with gzip.open(path, "rb") as packed:
            if packed.read(4) == _PARQUET_MAGIC:
                return "parquet"
    raise DatasetImportError(
        f"{path}: cannot tell the format from the name (.parquet, .csv, .jsonl, optionally .gz); pass --format"
    )


def _by_role(batch, roles: dict[str, str]) -> pa.RecordBatch:
    """The batch with one column per role, named for the role (a file column may serve two roles)."""
    arrays = [batch.column(column) for column in roles.values()]
    arrays = [array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array for array in arrays]
    return pa.RecordBatch.from_arrays(arrays, names=list(roles))


# --- Checking -------------------------------------------------------------------------------------------

_NIBBLES = np.zeros(256, dtype=np.uint64)
for _digit, _char in enumerate(b"0123456789abcdef"):
    _NIBBLES[_char] = _digit
    _NIBBLES[bytes([_char]).upper()[0]] = _digit
_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)  # most significant nibble first


def _as_text(array: pa.Array) -> pa.Array:
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    return pc.utf8_trim_whitespace(array)


def _present(text: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.greater(pc.utf8_length(text), 0), False).to_numpy(zero_copy_only=False)


def _hex_check(text: pa.Array, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """(present, malformed) masks of a column of hex strings."""
    present = _present(text)
    valid = pc.fill_null(pc.match_substring_regex(text, f"^[0-9a-fA-F]{{{digits}}}$"), False).to_numpy(
        zero_copy_only=False
    )
    return present & valid, present & ~valid


def _hex_words(text: pa.Array, valid: np.ndarray, words: int) -> list[pa.Array]:
    """Signed 64-bit words (most significant first) of hex strings of ``16 * words`` digits; null where not valid."""
    width = 16 * words
    filled = pc.if_else(pa.array(valid), text, pa.scalar("0" * width))
    fixed = pc.cast(filled, pa.binary(width))
    data = np.frombuffer(fixed.buffers()[1], dtype=np.uint8, count=len(fixed) * width, offset=fixed.offset * width)
    nibbles = _NIBBLES[data].reshape(len(fixed), words, 16)
    values = np.bitwise_or.reduce(nibbles << _SHIFTS, axis=2).view(np.int64)
    mask = ~valid
    return [pa.array(values[:, i], type=pa.int64(), mask=mask) for i in range(words)]


def _quality(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(present, malformed, value) of a PDQ quality column, integer or text."""
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        present = pc.is_valid(array).to_numpy(zero_copy_only=False)
        numbers = pc.fill_null(pc.cast(array, pa.float64()), -1.0).to_numpy(zero_copy_only=False)
    else:
        text = _as_text(array)
        present = _present(text)
        ok = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{1,3}(\.0*)?$"), False)
        numbers = pc.cast(pc.if_else(ok, text, pa.scalar("-1")), pa.float64()).to_numpy(zero_copy_only=False)
    valid = (numbers >= 0) & (numbers <= 100) & (numbers == np.floor(numbers))
    return present & valid, present & ~valid, np.where(valid, numbers, 0).astype(np.int16)


def _prepare(
    batch: pa.RecordBatch,
    first_row: int,
    numbers: np.ndarray | None,
    descriptor_id: int | None,
    summary: ImportSummary,
    path: str,
) -> pa.Table | None:
    """Check a role-named batch; record its bad rows in ``summary``; return its good rows in the staging layout."""
    n = batch.num_rows
    if not n:
        return None
    reason = np.zeros(n, dtype=np.int8)  # index into _REASONS; 0 means good so far

    def flag(mask: np.ndarray, why: str) -> None:
        reason[(reason == 0) & mask] = _REASONS.index(why)

    url = _as_text(batch.column(URL))
    flag(~_present(url), MISSING_URL)
    flag(
        pc.fill_null(pc.greater(pc.utf8_length(url), MAX_URL_LENGTH), False).to_numpy(zero_copy_only=False),
        URL_TOO_LONG,
    )
    http = pc.fill_null(pc.match_substring_regex(url, "^https?://", ignore_case=True), False)
    flag(~http.to_numpy(zero_copy_only=False), NOT_HTTP)

    names = batch.schema.names
    out: dict[str, pa.Array] = {}
    has_hash = np.zeros(n, dtype=bool)
    if PHASH in names:
        text = _as_text(batch.column(PHASH))
        valid, bad = _hex_check(text, 16)
        flag(bad, BAD_PHASH)
        out["phash"] = _hex_words(text, valid, 1)[0]
        has_hash |= valid
    if PDQ in names:
        text = _as_text(batch.column(PDQ))
        valid, bad = _hex_check(text, 64)
        flag(bad, BAD_PDQ)
        q_present, q_bad, q_value = _quality(batch.column(PDQ_QUALITY))
        flag(valid & q_bad, BAD_PDQ_QUALITY)
        keep = valid & q_present & (q_value >= MIN_PDQ_QUALITY)
        for i, word in enumerate(_hex_words(text, keep, 4)):
            out[f"pdq_{i}"] = word
        out["pdq_quality"] = pa.array(q_value, type=pa.int16(), mask=~keep)
        has_hash |= keep
    if SHA256 in names:
        text = _as_text(batch.column(SHA256))
        valid, bad = _hex_check(text, 64)
        flag(bad, BAD_SHA256)
        out["sha256"] = pc.if_else(pa.array(valid), pc.utf8_lower(text), pa.scalar(None, pa.string()))
        has_hash |= valid

    # Canonicalisation is the one per-row Python step: only for rows that passed every vectorised check.
    candidates = np.flatnonzero(reason == 0)
    digests = []
    if len(candidates):
        bad_url = _REASONS.index(BAD_URL)
        for index, text in zip(candidates, url.take(pa.array(candidates)).to_pylist(), strict=True):
            try:
                digests.append(url_sha256(text))
            except BadURL:
                reason[index] = bad_url

    bad_rows = np.flatnonzero(reason)
    if len(bad_rows):
        counts = np.bincount(reason[bad_rows], minlength=len(_REASONS))
        for code in np.flatnonzero(counts):
            summary.bad[_REASONS[code]] += int(counts[code])
        raw_url = batch.column(URL)
        for index in bad_rows[: max(MAX_EXAMPLES - len(summary.examples), 0)]:
            number = first_row + index + 1 if numbers is None else numbers[index]
            summary.add_example(path, f"row {number}", _REASONS[reason[index]], raw_url[index].as_py())

    good = reason == 0
    if not good.any():
        return None
    keep = pa.array(good)
    columns = {"url": pc.filter(url, keep), "url_sha256": pa.array(digests, pa.string())}
    for name in ("sha256", "phash", "pdq_0", "pdq_1", "pdq_2", "pdq_3", "pdq_quality"):
        if name in out:
            columns[name] = pc.filter(out[name], keep)
    if descriptor_id is not None:
        columns["descriptor_id"] = pc.filter(pa.array(np.full(n, descriptor_id, dtype=np.int64), mask=~has_hash), keep)
    # In key order, the unique index and the url_sha256 index are walked left to right instead of at random
    # (about a third faster on PostgreSQL), and concurrent imports take their row locks in one order.
    return pa.table(columns).sort_by("url_sha256")


def _shorten(text, limit: int = 100) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Writing --------------------------------------------------------------------------------------------

_STAGE = "optout_import_stage"
_STAGE_COLUMNS = {
    "url": "text",
    "url_sha256": "text",
    "sha256": "text",
    "phash": "bigint",
    "pdq_0": "bigint",
    "pdq_1": "bigint",
    "pdq_2": "bigint",
    "pdq_3": "bigint",
    "pdq_quality": "smallint",
    "descriptor_id": "bigint",
}


def _descriptor_id(columns: Columns) -> int | None:
    key = columns.descriptor_key()
    if key is None:
        return None
    descriptor, _ = HashDescriptor.objects.get_or_create(
        key=key,
        defaults={
            "details": {
                "source": "imported from the dataset file",
                "library": "unknown",
                "version": "unknown",
                "columns": {role: column for role, column in columns.by_role().items() if role != URL},
                "note": "computed by whoever built the file; may not be comparable with hashes computed here",
            }
        },
    )
    return descriptor.pk


def _writer_for(dataset_id: int):
    if connection.vendor == "postgresql":
        return lambda table: _write_postgres(dataset_id, table)
    return lambda table: _write_orm(dataset_id, table)


def _write_postgres(dataset_id: int, table: pa.Table) -> int:
    """COPY the batch into a session-local staging table, then move the new rows over; returns rows inserted."""
    present = [name for name in _STAGE_COLUMNS if name in table.column_names]
    buffer = io.BytesIO()
    pa_csv.write_csv(table.select(present), buffer, pa_csv.WriteOptions(include_header=False))
    buffer.seek(0)
    target = DatasetRow._meta.db_table
    stage = {name: f"s.{name}" for name in present}
    values = [
        "%s",
        stage["url"],
        stage["url_sha256"],
        f"coalesce({stage['sha256']}, '')" if "sha256" in stage else "''",
        *(stage.get(name, "NULL") for name in ("phash", "pdq_0", "pdq_1", "pdq_2", "pdq_3", "pdq_quality")),
        stage.get("descriptor_id", "NULL"),
        "0",
        "''",
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        # A crash may lose the last few commits; that is fine, because re-running the import redoes them.
        cursor.execute("SET LOCAL synchronous_commit = off")
        column_defs = ", ".join(f"{name} {kind}" for name, kind in _STAGE_COLUMNS.items())
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ({column_defs})")
        cursor.execute(f"TRUNCATE {_STAGE}")
        cursor.cursor.copy_expert(f"COPY {_STAGE} ({', '.join(present)}) FROM STDIN WITH (FORMAT csv)", buffer)
        cursor.execute(
            f"INSERT INTO {target} (dataset_id, url, url_sha256, sha256, phash, pdq_0, pdq_1, pdq_2, pdq_3,"  # noqa: S608
            f" pdq_quality, descriptor_id, hash_attempts, fetch_error)"
            f" SELECT {', '.join(values)} FROM {_STAGE} s"
            f" ON CONFLICT (dataset_id, url_sha256) DO NOTHING",
            [dataset_id],
        )
        return cursor.rowcount


def _write_orm(dataset_id: int, table: pa.Table) -> int:
    data = table.to_pydict()
    n = table.num_rows
    nulls = [None] * n
    rows = [
        DatasetRow(
            dataset_id=dataset_id,
            url=url,
            url_sha256=digest,
            sha256=sha or "",
            phash=phash,
            pdq_0=p0,
            pdq_1=p1,
            pdq_2=p2,
            pdq_3=p3,
            pdq_quality=quality,
            descriptor_id=descriptor,
        )
        for url, digest, sha, phash, p0, p1, p2, p3, quality, descriptor in zip(
            data["url"],
            data["url_sha256"],
            data.get("sha256", nulls),
            data.get("phash", nulls),
            data.get("pdq_0", nulls),
            data.get("pdq_1", nulls),
            data.get("pdq_2", nulls),
            data.get("pdq_3", nulls),
            data.get("pdq_quality", nulls),
            data.get("descriptor_id", nulls),
            strict=True,
        )
    ]
    with transaction.atomic():
        before = _changes()
        DatasetRow.objects.bulk_create(rows, ignore_conflicts=True)
        if before is None:
            return DatasetRow.objects.filter(dataset_id=dataset_id, url_sha256__in=data["url_sha256"]).count()
        return _changes() - before


def _changes() -> int | None:
    # bulk_create(ignore_conflicts=True) does not say how many rows it inserted; SQLite's change counter does.
    if connection.vendor != "sqlite":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT total_changes()")
        return cursor.fetchone()[0]


# --- Overlapping reading with writing ------------------------------------------------------------------

_DONE = object()


def _read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Yield ``items`` produced by a helper thread that stays up to ``depth`` items ahead.

    Only reading and checking run in the thread; all database work stays in the caller's thread (Django
    connections are per thread). Errors in the thread are re-raised here.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((None, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 -- handed over to the consumer, which re-raises it
            put((exc, None))
            return
        put((None, _DONE))

    thread = threading.Thread(target=produce, name="dataset-import-reader", daemon=True)
    thread.start()
    try:
        while True:
            error, item = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
