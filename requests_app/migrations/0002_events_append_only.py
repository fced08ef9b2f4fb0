"""On PostgreSQL, the database itself refuses to change or delete a request event."""

from django.db import migrations

CREATE = """
CREATE FUNCTION requests_app_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'request events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER requests_app_event_append_only
    BEFORE UPDATE OR DELETE ON requests_app_requestevent
    FOR EACH ROW EXECUTE FUNCTION requests_app_event_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS requests_app_event_append_only ON requests_app_requestevent;
DROP FUNCTION IF EXISTS requests_app_event_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("requests_app", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
