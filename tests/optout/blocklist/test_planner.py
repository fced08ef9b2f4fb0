"""The publisher's statistics after its own bulk writes."""

import pytest
from django.db import connection

from optout.blocklist import planner
from optout.models import BlocklistEntry, PublicDecoy

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def estimated_rows(model) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        return cursor.fetchone()[0]


def add_decoys(count: int, start: int = 0) -> None:
    entry = BlocklistEntry.objects.create(url_sha256=f"{start:064x}", created_at="2026-01-01T00:00Z",
                                          changed_at="2026-01-01T00:00Z")  # fmt: skip
    PublicDecoy.objects.bulk_create(PublicDecoy(entry=entry, url_sha256=f"{start + i:064x}") for i in range(count))


def test_a_bulk_write_is_analysed_in_its_transaction():
    add_decoys(400)
    planner.analyze_after_bulk(PublicDecoy, 400)
    assert estimated_rows(PublicDecoy) == 400


def test_a_small_change_to_an_analysed_table_is_not():
    add_decoys(400)
    planner.analyze_after_bulk(PublicDecoy, 400)
    add_decoys(30, start=1000)
    planner.analyze_after_bulk(PublicDecoy, 30)  # under the threshold of 50 + 40
    add_decoys(60, start=2000)
    planner.analyze_after_bulk(PublicDecoy, 60)
    assert estimated_rows(PublicDecoy) == 400
    add_decoys(100, start=3000)
    planner.analyze_after_bulk(PublicDecoy, 100)
    assert estimated_rows(PublicDecoy) == 590


def test_settings_last_for_the_statements_inside_only():
    with connection.cursor() as cursor, planner.settings(cursor, enable_seqscan="off"):
        cursor.execute("SELECT current_setting('enable_seqscan')")
        assert cursor.fetchone() == ("off",)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_seqscan')")
        assert cursor.fetchone() == ("on",)


def hash_joins() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_hashjoin')")
        return cursor.fetchone()[0]


def test_a_few_changed_entries_are_joined_by_index_lookups_many_are_not():
    for i in range(200):
        BlocklistEntry.objects.create(url_sha256=f"{i:064x}", created_at="2026-01-01T00:00Z",
                                      changed_at="2026-01-01T00:00Z")  # fmt: skip
    planner.analyze_after_bulk(BlocklistEntry, 200)
    with planner.lookups(20, BlocklistEntry):
        assert hash_joins() == "off"
    assert hash_joins() == "on"
    with planner.lookups(21, BlocklistEntry):
        assert hash_joins() == "on"
