"""A release's Parquet snapshot (``snapshot_parquet`` in the manifest), read without a Python object per entry.

The layout the server publishes: one row per entry sorted by ``url_sha256``
(``fixed_size_binary(32)``, the key), ``sha256`` (``fixed_size_binary(32)``,
null when unknown), and in the partner tier ``phash`` (``fixed_size_binary(8)``,
big-endian), ``pdq`` (``fixed_size_binary(32)``) and ``pdq_quality`` (int16).
``write_generation`` checks the rows (keys present, strictly increasing) and
writes a generation's lookup files from the columns with numpy; the verified
Parquet file itself becomes the generation's ``entries.parquet``.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from optout.client.manifest import state_sha256


def _fixed(table: pa.Table, name: str, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(the column's values as an (n, width) uint8 array, which rows are not null), or None without the column."""
    if name not in table.column_names:
        return None
    column = table.column(name).combine_chunks()
    if column.type != pa.binary(width):
        raise ValueError(f"the {name} column is {column.type}, not fixed_size_binary({width})")
    data = np.frombuffer(column.buffers()[1], dtype=np.uint8)[
        column.offset * width : (column.offset + len(column)) * width
    ]
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return data.reshape(-1, width), valid


def _unique_sorted(rows: np.ndarray) -> bytes:
    """Distinct byte rows in lexicographic order, joined."""
    if not len(rows):
        return b""
    words = np.ascontiguousarray(rows).view(">u8")
    ordered = words[np.lexsort(words.T[::-1])]
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    return ordered[keep].tobytes()


def _strictly_increasing(words: np.ndarray) -> bool:
    before, after = words[:-1], words[1:]
    greater = np.zeros(len(before), dtype=bool)
    equal = np.ones(len(before), dtype=bool)
    for column in range(words.shape[1]):
        greater |= equal & (after[:, column] > before[:, column])
        equal &= after[:, column] == before[:, column]
    return bool(greater.all())


def write_generation(snapshot: Path, directory: Path) -> tuple[int, str]:
    """Write urls.bin, sha256.bin, phash.bin and pdq.bin of ``directory`` from a Parquet snapshot.

    Returns (entries, state_sha256); raises ``ValueError`` for rows that break the layout.
    """
    try:
        table = pq.read_table(snapshot)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"not a readable Parquet file: {exc}") from None
    keys = _fixed(table, "url_sha256", 32)
    if keys is None or not keys[1].all():
        raise ValueError("the url_sha256 column is missing or has nulls")
    keys = keys[0]
    if len(keys) > 1 and not _strictly_increasing(keys.view(">u8")):
        raise ValueError("the entries are not sorted by key (or repeat one)")
    images = _fixed(table, "sha256", 32)
    (directory / "urls.bin").write_bytes(keys.tobytes())
    (directory / "sha256.bin").write_bytes(_unique_sorted(images[0][images[1]]) if images else b"")
    phashes = _fixed(table, "phash", 8)
    values = np.unique(phashes[0][phashes[1]].view(">u8").ravel()) if phashes else np.zeros(0, np.uint64)
    (directory / "phash.bin").write_bytes(values.astype("<u8").tobytes())
    pdqs = _fixed(table, "pdq", 32)
    (directory / "pdq.bin").write_bytes(_unique_sorted(pdqs[0][pdqs[1]]) if pdqs else b"")
    return len(keys), state_sha256(keys.tobytes())


def read_entries(path: Path):
    """The entries of a Parquet snapshot as the dicts ``state.EntryWriter`` takes, in key order."""
    parquet = pq.ParquetFile(path)
    partner = "phash" in parquet.schema_arrow.names
    for batch in parquet.iter_batches(batch_size=65_536):
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        for row in range(batch.num_rows):
            key = columns["url_sha256"][row].hex()
            image = columns["sha256"][row]
            entry = {"key": key, "url_sha256": key, "sha256": image.hex() if image is not None else None}
            if partner:
                phash, pdq = columns["phash"][row], columns["pdq"][row]
                entry["phash"] = phash.hex() if phash is not None else None
                entry["pdq"] = pdq.hex() if pdq is not None else None
                entry["pdq_quality"] = columns["pdq_quality"][row]
            yield entry
