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


def analyze_after_bulk(model: type[models.Model], changed: int) -> None:
    """Analyse the model's table if ``changed`` rows (inserted or updated, in this transaction) are a tenth of
    what its statistics say it holds, or it was never analysed. PostgreSQL only; a no-op elsewhere."""
    if connection.vendor != "postgresql" or changed <= _THRESHOLD:
        return
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        (estimated,) = cursor.fetchone()
        if estimated < 0 or changed > _THRESHOLD + _SCALE * estimated:  # -1: never analysed
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")


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
