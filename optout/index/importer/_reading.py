"""Reading Parquet, CSV and JSON Lines files (gzip too) as streams of record batches."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from optout.index.importer._checking import _prepare  # noqa: F401
from optout.index.importer._summary import (  # noqa: F401
    _EXTENSIONS,
    _GZIP_MAGIC,
    _JSONL_BLOCK_BYTES,
    _PARQUET_MAGIC,
    MALFORMED_RECORD,
    Columns,
    DatasetImportError,
    ImportSummary,
)

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
