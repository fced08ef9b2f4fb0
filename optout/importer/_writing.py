"""Writing checked batches: COPY and INSERT ... ON CONFLICT on PostgreSQL, bulk_create elsewhere."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection, transaction

from optout.importer._summary import URL, Columns
from optout.models import DatasetRow, HashDescriptor

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
