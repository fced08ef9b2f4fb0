"""Bulk import of dataset URL lists (Parquet, CSV, JSON Lines) into the dataset index.

``import_files`` streams each file in batches of Arrow record batches, so memory stays flat however large the
file is. Per batch:

1. checks the URL and the optional hash columns, vectorised with Arrow compute (trimming, emptiness, length,
   scheme, hex syntax, hex -> signed 64-bit words) -- only the URL canonicalisation runs per row in Python;
2. writes the good rows: on PostgreSQL by ``COPY`` into a temporary table followed by
   ``INSERT ... SELECT ... ON CONFLICT (dataset_id, url_sha256) DO NOTHING``; elsewhere (SQLite) by
   ``bulk_create(ignore_conflicts=True)``. One transaction per batch. A dataset with no rows yet is loaded,
   on PostgreSQL, into a bare table that is attached as its partition at the end (``_writing._PartitionLoader``).

Reading and checking run in a helper thread one batch ahead of the writer, so Python work on the next batch
overlaps with the database working on this one (psycopg2 releases the GIL while it waits for the server).

Decisions worth knowing:

- **Idempotent and resumable.** Rows are unique per (dataset, url_sha256); a row whose canonical URL is
  already in the dataset, or repeats within the file, is skipped and counted as *already present*. Each batch
  commits on its own, so an interrupted import is resumed by running the same command again: what was
  committed is skipped, the rest is inserted. Existing rows are never updated (a re-import with more hash
  columns does not fill in hashes of rows already present).
- **Bad rows are skipped, not fatal.** A row is bad when its URL is missing, longer than ``MAX_ROW_URL_LENGTH``,
  not http(s), rejected by the canonicaliser, or when a hash cell is present but malformed (wrong length,
  not hex, PDQ quality not an integer 0-100); a malformed hash hints at a wrong column or a corrupt row, so
  the whole row is left out rather than imported half-known. Empty or null hash cells are fine: the hash is
  simply unknown (img2dataset leaves them empty for failed downloads). Malformed CSV records and JSON lines
  are bad rows too. The summary counts bad rows by reason and keeps a few examples.
- **PDQ quality.** PDQ hashes below quality 50 must be discarded: with ``pdq_quality_column``, PDQ words
  and quality are stored only when the quality is at least 50 (below that the row is imported with PDQ
  unknown). Without a quality column (many pipelines keep only the hash), nothing is computed and the PDQ
  is stored with its quality unknown (null). Such a row is *found* by its PDQ (the matcher searches it), but
  its PDQ never counts as evidence: verification reads an unknown quality as below the floor, so the row
  gives evidence only through its pHash or its bytes (a single family: weak at most).
- **Imported hashes are labelled.** Rows that got a hash from the file point to a ``HashDescriptor`` with key
  ``import:<columns>``: the hashes came from the file, computed by an unknown library and version, so they
  may not be comparable with the ones this system computes. ``hashed_at`` stays empty, because we did not
  compute them.
- **Row numbers** in examples count data records from 1 (the CSV header and blank JSON lines are not
  counted); malformed CSV records are reported by physical line number.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from tqdm import tqdm

from optout.index import events
from optout.index.importer._reading import _Source
from optout.index.importer._summary import DEFAULT_BATCH_SIZE, FORMATS, Columns, DatasetImportError, ImportSummary
from optout.index.importer._writing import _dataset_lock, _descriptor_id, _writer_for, count_rows
from optout.models import Dataset

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FORMATS",
    "Columns",
    "DatasetImportError",
    "ImportSummary",
    "count_rows",
    "import_files",
]

_DEFAULT_COLUMNS = Columns()


def import_files(
    name: str,
    paths: Iterable[str | os.PathLike],
    *,
    columns: Columns = _DEFAULT_COLUMNS,
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
    with ExitStack() as stack:
        stack.enter_context(_dataset_lock(dataset.pk))
        # A new dataset on PostgreSQL loads a partition of its own (see _writing._PartitionLoader).
        writer = _writer_for(dataset.pk)
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
                inserted = writer.write(prepared.table)
                summary.inserted += inserted
                summary.already_present += prepared.table.num_rows - inserted
            bar.update(prepared.progress)
        repeated = writer.finish()
        summary.inserted -= repeated
        summary.already_present += repeated
    summary.elapsed = time.monotonic() - started
    if summary.inserted:
        events.rows_gained_signals.send_robust(sender=Dataset, dataset_id=dataset.pk, hashed=False)
    return summary


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
