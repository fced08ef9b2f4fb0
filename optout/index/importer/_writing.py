"""Writing checked batches: COPY and INSERT ... ON CONFLICT on PostgreSQL, bulk_create elsewhere."""

from __future__ import annotations

import io
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from optout.index.importer._summary import URL, Columns
from optout.models import Dataset, DatasetRow, HashDescriptor

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


def count_rows(dataset_id: int, added: int) -> None:
    """Add ``added`` rows to the dataset's ``row_count``, in the caller's transaction."""
    if added:
        Dataset.objects.filter(pk=dataset_id).update(row_count=F("row_count") + added)


class _RowWriter:
    """Writes checked batches into a dataset's rows; ``write`` returns how many rows were new."""

    def __init__(self, dataset_id: int):
        self.dataset_id = dataset_id

    def write(self, table: pa.Table) -> int:
        with transaction.atomic():  # the rows and their count become visible together
            if connection.vendor == "postgresql":
                inserted = _write_postgres(self.dataset_id, table, DatasetRow._meta.db_table, on_conflict=True)
            else:
                inserted = _write_orm(self.dataset_id, table)
            count_rows(self.dataset_id, inserted)
        return inserted

    def finish(self) -> int:
        """Make the written rows visible, if they are not yet; returns duplicates dropped on the way."""
        return 0


class _PartitionLoader(_RowWriter):
    """PostgreSQL, a dataset with no rows yet: load a partition of its own, then attach it.

    The rows go into a bare table (no index to maintain per row) and PostgreSQL builds every
    index by sorting when ``finish`` attaches it as the dataset's partition: several times
    faster than inserting into the indexed table. The rows become matchable all at once, at
    the attach. An import interrupted before that left only the bare table, which the next
    run drops and loads again. A session advisory lock on the dataset keeps a concurrent
    import of the same dataset waiting until this one is done (it then takes the usual path).
    """

    def __init__(self, dataset_id: int):
        super().__init__(dataset_id)
        self.written = 0  # rows in the bare table: counted when the attach makes them the dataset's
        self.table = f"optout_datasetrow_d{int(dataset_id)}"
        parent = DatasetRow._meta.db_table
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            cursor.execute(
                f"CREATE TABLE {self.table} (LIKE {parent} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)"
            )
            # Lets ATTACH PARTITION skip the scan that proves every row belongs to this dataset.
            cursor.execute(
                f"ALTER TABLE {self.table} ADD CONSTRAINT {self.table}_dataset"
                f" CHECK (dataset_id IS NOT NULL AND dataset_id = {int(dataset_id)})"
            )

    def write(self, table: pa.Table) -> int:
        inserted = _write_postgres(self.dataset_id, table, self.table, on_conflict=False)
        self.written += inserted
        return inserted

    def finish(self) -> int:
        parent = DatasetRow._meta.db_table
        unique = f"ALTER TABLE {self.table} ADD CONSTRAINT {self.table}_url UNIQUE (url_sha256, dataset_id)"
        duplicates = 0
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            # Add the unique constraint first: it is needed anyway, and it proves in one sort that no URL
            # came twice across batches. Only if one did, drop the repeats (a self-join) and build again.
            try:
                with transaction.atomic():
                    cursor.execute(unique)
            except IntegrityError:
                cursor.execute(
                    f"DELETE FROM {self.table} a USING {self.table} b"  # noqa: S608 (names made here)
                    f" WHERE a.url_sha256 = b.url_sha256 AND a.id > b.id"
                )
                duplicates = cursor.rowcount
                cursor.execute(unique)
            cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {self.table} FOR VALUES IN ({int(self.dataset_id)})")
            cursor.execute(f"ALTER TABLE {self.table} DROP CONSTRAINT {self.table}_dataset")
            count_rows(self.dataset_id, self.written - duplicates)
        return duplicates


@contextmanager
def _dataset_lock(dataset_id: int):
    """One import of a dataset at a time (PostgreSQL: a session advisory lock; SQLite has one writer anyway)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_SPACE, dataset_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_SPACE, dataset_id])


_LOCK_SPACE = 0x0F7_1A9  # the first key of the two-key advisory lock: "dataset import"


def _writer_for(dataset_id: int) -> _RowWriter:
    if connection.vendor == "postgresql" and _can_load_a_partition(dataset_id):
        return _PartitionLoader(dataset_id)
    return _RowWriter(dataset_id)


def _can_load_a_partition(dataset_id: int) -> bool:
    """The dataset has no rows and no partition of its own yet (its rows would sit in the default one)."""
    if DatasetRow.objects.filter(dataset_id=dataset_id).exists():
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = %s)",
            [f"optout_datasetrow_d{int(dataset_id)}"],
        )
        return not cursor.fetchone()[0]


def _write_postgres(dataset_id: int, table: pa.Table, target: str, *, on_conflict: bool) -> int:
    """COPY the batch into a session-local staging table, then move the new rows over; returns rows inserted."""
    present = [name for name in _STAGE_COLUMNS if name in table.column_names]
    buffer = io.BytesIO()
    pa_csv.write_csv(table.select(present), buffer, pa_csv.WriteOptions(include_header=False))
    buffer.seek(0)
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
        # Into the indexed table, the unique index drops repeats; into a bare partition, DISTINCT ON
        # drops those within the batch (and the loader's finish those across batches).
        # Every name in these statements is made here; the only value, the dataset id, is a parameter.
        columns = ", ".join(values)
        if on_conflict:
            select = f"SELECT {columns} FROM {_STAGE} s"  # noqa: S608
        else:
            select = f"SELECT DISTINCT ON (s.url_sha256) {columns} FROM {_STAGE} s ORDER BY s.url_sha256"  # noqa: S608
        cursor.execute(
            f"INSERT INTO {target} (dataset_id, url, url_sha256, sha256, phash, pdq_0, pdq_1, pdq_2, pdq_3,"  # noqa: S608
            f" pdq_quality, descriptor_id, hash_attempts, fetch_error) {select}"
            + (" ON CONFLICT (dataset_id, url_sha256) DO NOTHING" if on_conflict else ""),
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
