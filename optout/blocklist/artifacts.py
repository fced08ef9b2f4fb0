"""Release files built in a stream: SQL rows in, gzip JSON Lines, Parquet and the state hash out.

No Python object per entry: on PostgreSQL the rows leave the database by ``COPY ... TO STDOUT``
as CSV into a temporary file, Arrow's CSV reader turns them into record batches of tens of
thousands of rows, and each batch becomes JSON lines (Arrow string kernels), Parquet rows (hex
decoded with numpy) and state-hash input at once. Memory stays at a few batches whatever the
size of the blocklist. SQLite (development, tests) feeds the same batches from a plain cursor.

The JSON lines are byte for byte what ``canonical_json`` gives for the same dict (sorted keys, no
spaces): the fixed templates below are that function's output with the values cut out.
"""

import hashlib
import io
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from django.db import connection
from isal import isal_zlib

from optout.client.hexes import unhexlify_column

_SPOOL_BYTES = 32 * 1024 * 1024
_BATCH_ROWS = 65_536
# CSV read from a COPY a megabyte at a time (about 8,000 keys): 8 MB blocks, parsed on several threads at once,
# took the publisher's peak memory 150 MB higher at a million entries for no gain in speed.
_CSV_BLOCK = 1 << 20
# ISA-L's level 1: hex keys barely compress further, and at 1M entries zlib's level 1 took a second per snapshot
# that this does in a fifth of it (and 12% smaller). Any gzip reader reads it.
_GZIP_LEVEL = 1

# Columns of each kind of row source, in order; all strings but the quality.
PUBLIC_COLUMNS = ("key", "op", "sha256")
PARTNER_COLUMNS = ("key", "op", "sha256", "phash", "pdq", "pdq_quality")

PUBLIC_SCHEMA = pa.schema(
    [pa.field("url_sha256", pa.binary(32), nullable=False), pa.field("sha256", pa.binary(32))],
)
PARTNER_SCHEMA = pa.schema(
    [
        *PUBLIC_SCHEMA,
        pa.field("phash", pa.binary(8)),
        pa.field("pdq", pa.binary(32)),
        pa.field("pdq_quality", pa.int16()),
    ]
)
PARQUET_LAYOUT = (
    "Parquet, one row per entry sorted by url_sha256 (the key; not repeated): url_sha256 and sha256 as "
    "fixed_size_binary(32), sha256 null when unknown"
)
PARTNER_PARQUET_LAYOUT = (
    PARQUET_LAYOUT + "; then phash fixed_size_binary(8) (big-endian), pdq fixed_size_binary(32), pdq_quality int16"
)


def _hex_to_binary(column: pa.Array, width: int) -> pa.Array:
    """Hex strings (or nulls) to fixed_size_binary(width), vectorised."""
    valid = pc.is_valid(column)
    raw = unhexlify_column(pc.fill_null(column, "0" * (2 * width)).cast(pa.string()), 2 * width)
    binary = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(column), [None, pa.py_buffer(raw.reshape(-1))])
    if valid.false_count == 0:
        return binary
    return pc.if_else(valid, binary, pa.scalar(None, pa.binary(width)))


def _json(column: pa.Array) -> pa.Array:
    """A string column as JSON values: "value" or null."""
    return pc.if_else(pc.is_valid(column), pc.binary_join_element_wise('"', column, '"', ""), "null")


def _concatenated(lines: pa.Array) -> memoryview:
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]


def json_lines(batch: pa.RecordBatch, partner: bool) -> memoryview:
    """The batch as canonical JSON lines, each ending in a newline."""
    key, op = batch.column("key"), batch.column("op")
    removes = pc.equal(op, "remove")
    tombstone = pc.binary_join_element_wise('{"key":"', key, '","op":"remove","url_sha256":"', key, '"}\n', "")
    if partner:
        quality = pc.if_else(
            pc.is_valid(batch.column("pdq_quality")), batch.column("pdq_quality").cast(pa.string()), "null"
        )
        parts = [
            '{"key":"', key, '","op":"add","pdq":', _json(batch.column("pdq")), ',"pdq_quality":', quality,
            ',"phash":', _json(batch.column("phash")), ',"sha256":', _json(batch.column("sha256")),
            ',"url_sha256":"', key, '"}\n',
        ]  # fmt: skip
    else:
        parts = [
            '{"key":"',
            key,
            '","op":"add","sha256":',
            _json(batch.column("sha256")),
            ',"url_sha256":"',
            key,
            '"}\n',
        ]
    add = pc.binary_join_element_wise(*parts, "")
    lines = pc.if_else(removes, tombstone, add) if removes.true_count else add
    return _concatenated(lines)


@dataclass
class Written:
    """A finished file: where its bytes are (at position 0), their sha256 and size."""

    file: tempfile.SpooledTemporaryFile
    sha256: str
    bytes: int


class _Hashing(io.RawIOBase):
    """A spooled temporary file that hashes what is written to it (closing it leaves the file open)."""

    def __init__(self):
        super().__init__()
        self.file = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.file.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def finish(self) -> Written:
        self.file.seek(0)
        return Written(self.file, self.digest.hexdigest(), self.size)


class JsonLinesWriter:
    """gzip JSON Lines; mtime 0 and no file name, so the same lines always give the same bytes."""

    def __init__(self, partner: bool):
        self.partner = partner
        self.out = _Hashing()
        self._gzip = isal_zlib.compressobj(_GZIP_LEVEL, isal_zlib.DEFLATED, 31)
        self.added = 0
        self.removed = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.out.write(self._gzip.compress(json_lines(batch, self.partner)))
        removed = pc.sum(pc.equal(batch.column("op"), "remove")).as_py() or 0
        self.removed += removed
        self.added += batch.num_rows - removed

    def finish(self) -> Written:
        self.out.write(self._gzip.flush())
        return self.out.finish()


class ParquetWriter:
    def __init__(self, partner: bool):
        self.partner = partner
        self.out = _Hashing()
        self.rows = 0
        schema = PARTNER_SCHEMA if partner else PUBLIC_SCHEMA
        # Random keys do not compress; nulls cost a bit each whatever the codec.
        self._writer = pq.ParquetWriter(self.out, schema, compression="none", use_dictionary=False)
        self._schema = schema

    def write(self, batch: pa.RecordBatch) -> None:
        columns = [_hex_to_binary(batch.column("key"), 32), _hex_to_binary(batch.column("sha256"), 32)]
        if self.partner:
            columns += [
                _hex_to_binary(batch.column("phash"), 8),
                _hex_to_binary(batch.column("pdq"), 32),
                batch.column("pdq_quality").cast(pa.int16()),
            ]
        self._writer.write_batch(pa.record_batch(columns, schema=self._schema))
        self.rows += batch.num_rows

    def finish(self) -> Written:
        self._writer.close()
        return self.out.finish()


@dataclass
class StateHash:
    """sha256 of the sorted keys, each followed by a newline; and how many there were."""

    digest: object = field(default_factory=hashlib.sha256)
    entries: int = 0

    def write(self, batch: pa.RecordBatch) -> None:
        keys = batch.column("key").cast(pa.string())
        offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset + len(keys) + 1]
        data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        block = np.empty((len(keys), 65), dtype=np.uint8)
        block[:, :64] = data.reshape(-1, 64)
        block[:, 64] = ord("\n")
        self.digest.update(block.tobytes())
        self.entries += len(keys)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


# --- Row sources ---------------------------------------------------------------------------------


def batches(sql: str, columns: tuple[str, ...]):
    """Record batches of the rows ``sql`` selects (its columns named as ``columns``), in its order."""
    types = {name: pa.string() for name in columns}
    if "pdq_quality" in columns:
        types["pdq_quality"] = pa.int16()
    if connection.vendor == "postgresql":
        yield from _copied(sql, columns, types)
        return
    schema = pa.schema([(name, types[name]) for name in columns])
    with connection.cursor() as cursor:
        cursor.execute(sql)
        while rows := cursor.fetchmany(_BATCH_ROWS):
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(values, type=types[name])
                    for name, values in zip(columns, zip(*rows, strict=True), strict=True)
                ],
                schema=schema,
            )


def _copied(sql: str, columns: tuple[str, ...], types: dict):
    with tempfile.TemporaryFile() as spool:
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", spool)
        if spool.tell() == 0:
            return
        spool.seek(0)
        reader = pa_csv.open_csv(
            spool,
            read_options=pa_csv.ReadOptions(column_names=list(columns), block_size=_CSV_BLOCK),
            convert_options=pa_csv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        yield from reader
