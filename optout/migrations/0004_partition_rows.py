"""On PostgreSQL, dataset rows move to a table partitioned by dataset (LIST on dataset_id).

A large import of a new dataset then loads a partition of its own with no index to maintain,
and PostgreSQL builds the indexes by sorting when the partition is attached (optout/index/importer).
Rows of datasets without a partition of their own live in the DEFAULT partition.

PostgreSQL 15 has no identity columns on partitioned tables, so `id` takes its values from an
owned sequence; the primary key becomes (id, dataset_id), as a partitioned table's keys must
include the partition key. SQLite keeps the plain table.
"""

from django.db import migrations

COLUMNS = (
    "id, dataset_id, url, url_sha256, sha256, phash, pdq_0, pdq_1, pdq_2, pdq_3, pdq_quality,"
    " descriptor_id, hashed_at, hash_attempts, fetch_error"
)

BEFORE_INDEXES = f"""
CREATE SEQUENCE optout_datasetrow_rowid_seq;
CREATE TABLE optout_datasetrow_partitioned
    (LIKE optout_datasetrow INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)
    PARTITION BY LIST (dataset_id);
ALTER TABLE optout_datasetrow_partitioned ALTER COLUMN id SET DEFAULT nextval('optout_datasetrow_rowid_seq');
ALTER SEQUENCE optout_datasetrow_rowid_seq OWNED BY optout_datasetrow_partitioned.id;
CREATE TABLE optout_datasetrow_default PARTITION OF optout_datasetrow_partitioned DEFAULT;
INSERT INTO optout_datasetrow_partitioned ({COLUMNS}) SELECT {COLUMNS} FROM optout_datasetrow;
SELECT setval('optout_datasetrow_rowid_seq', coalesce((SELECT max(id) FROM optout_datasetrow_partitioned), 0) + 1, false);
DROP TABLE optout_datasetrow;
ALTER TABLE optout_datasetrow_partitioned RENAME TO optout_datasetrow;
ALTER SEQUENCE optout_datasetrow_rowid_seq RENAME TO optout_datasetrow_id_seq;
ALTER TABLE optout_datasetrow ADD CONSTRAINT optout_datasetrow_pkey PRIMARY KEY (id, dataset_id);
ALTER TABLE optout_datasetrow ADD CONSTRAINT datasetrow_unique_url_per_dataset UNIQUE (url_sha256, dataset_id);
ALTER TABLE optout_datasetrow ADD CONSTRAINT optout_datasetrow_dataset_id_fk FOREIGN KEY (dataset_id)
    REFERENCES optout_dataset (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE optout_datasetrow ADD CONSTRAINT optout_datasetrow_descriptor_id_fk FOREIGN KEY (descriptor_id)
    REFERENCES optout_hashdescriptor (id) DEFERRABLE INITIALLY DEFERRED;
"""


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(BEFORE_INDEXES)
    model = apps.get_model("optout", "DatasetRow")
    for index in model._meta.indexes:
        schema_editor.add_index(model, index)


class Migration(migrations.Migration):
    dependencies = [("optout", "0003_publish_permission")]
    operations = [migrations.RunPython(partition)]
