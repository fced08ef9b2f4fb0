"""What the publisher tells PostgreSQL's planner: settings for a few statements, and statistics after its own
bulk writes.

Autovacuum analyses a table once a tenth of it changed, but only after the transaction that changed it commits,
and some time after that: a release that draws 900,000 decoys, or marks every entry published, would be planned
from statistics of the table before it (a per-entry estimate of thousands of decoys instead of nine), and the
next release too. So the publisher analyses what it changed in bulk itself, inside its transaction: ANALYZE
reads a sample of 30,000 rows whatever the size of the table, a few tens of milliseconds.
"""

from contextlib import contextmanager

from django.db import connection, models

# As autovacuum's default analyze threshold and scale factor: analyse after 50 rows plus a tenth of the table.
_THRESHOLD = 50
_SCALE = 0.1


def _estimated_rows(model: type[models.Model]) -> float:
    """The rows the statistics say the model's table holds; -1 if it was never analysed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        return cursor.fetchone()[0]


def analyze_after_bulk(model: type[models.Model], changed: int) -> None:
    """Analyse the model's table if ``changed`` rows (inserted or updated, in this transaction) are a tenth of
    what its statistics say it holds, or it was never analysed. PostgreSQL only; a no-op elsewhere."""
    if connection.vendor != "postgresql" or changed <= _THRESHOLD:
        return
    estimated = _estimated_rows(model)
    if estimated < 0 or changed > _THRESHOLD + _SCALE * estimated:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


@contextmanager
def lookups(few: int, model: type[models.Model]):
    """Statements inside start from ``few`` rows of the model's table (the changed entries) and reach into big
    tables: while they are a tenth of it or less, join by index lookups only. The planner's costs prefer reading
    a whole table of 900,000 decoys into a hash join to 15,000 lookups in its index, which took four times as
    long on a table in memory, as the publisher's are."""
    if connection.vendor != "postgresql" or few > _SCALE * _estimated_rows(model):
        yield
        return
    with connection.cursor() as cursor, settings(cursor, enable_hashjoin="off", enable_mergejoin="off"):
        yield


@contextmanager
def settings(cursor, **values: str):
    """PostgreSQL settings for the statements inside, then back as they were (the publisher's transaction goes
    on: ``SET LOCAL`` would last to its end)."""
    before = {}
    for name, value in values.items():
        cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
        before[name] = cursor.fetchone()[0]
    try:
        yield
    finally:
        for name, value in before.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
