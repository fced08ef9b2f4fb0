"""On PostgreSQL a new dataset is loaded into a partition of its own, then attached."""

import csv

import pytest
from django.db import connection

from optout.imaging import hashbits
from optout.index import matcher
from optout.index.importer import Columns, import_files
from optout.models import DatasetRow

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def write_csv(path, urls, phashes=None):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "phash"])
        for n, url in enumerate(urls):
            writer.writerow([url, phashes[n] if phashes else ""])
    return path


def partition_of(dataset_name: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent JOIN optout_dataset d ON c.relname = 'optout_datasetrow_d' || d.id"
            " WHERE p.relname = 'optout_datasetrow' AND d.name = %s",
            [dataset_name],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def test_a_new_dataset_gets_its_own_attached_partition_and_is_matchable(tmp_path):
    urls = [f"https://example.com/{n}.jpg" for n in range(50)]
    phashes = [f"{(n * 0x9E3779B97F4A7C15) % (1 << 64):016x}" for n in range(50)]
    summary = import_files(
        "laion-part", [write_csv(tmp_path / "a.csv", urls, phashes)], columns=Columns(phash="phash"), batch_size=7
    )
    assert (summary.inserted, summary.already_present) == (50, 0)
    assert partition_of("laion-part") is not None
    row = DatasetRow.objects.get(url="https://example.com/3.jpg")
    assert row.ph_c0 is not None
    found = matcher.phash_neighbours(hashbits.phash_from_hex(phashes[3]), 0)
    assert [match.row_id for match in found] == [row.id]


def test_repeats_across_batches_are_counted_once(tmp_path):
    urls = [f"https://example.com/{n % 10}.jpg" for n in range(40)]  # each URL four times, across batches
    summary = import_files("laion-repeats", [write_csv(tmp_path / "r.csv", urls)], batch_size=6)
    assert (summary.rows_read, summary.inserted, summary.already_present) == (40, 10, 30)
    assert DatasetRow.objects.filter(dataset__name="laion-repeats").count() == 10


def test_a_second_import_adds_to_the_partition_through_the_indexed_path(tmp_path):
    import_files("laion-twice", [write_csv(tmp_path / "1.csv", ["https://example.com/1.jpg"])])
    summary = import_files(
        "laion-twice", [write_csv(tmp_path / "2.csv", ["https://example.com/1.jpg", "https://example.com/2.jpg"])]
    )
    assert (summary.inserted, summary.already_present) == (1, 1)
    assert DatasetRow.objects.filter(dataset__name="laion-twice").count() == 2


def test_an_interrupted_load_is_dropped_and_redone(tmp_path, monkeypatch):
    from optout.index.importer import _writing

    path = write_csv(tmp_path / "i.csv", [f"https://example.com/{n}.jpg" for n in range(20)])

    def crash(self):
        raise RuntimeError("killed before the attach")

    monkeypatch.setattr(_writing._PartitionLoader, "finish", crash)
    with pytest.raises(RuntimeError):
        import_files("laion-crash", [path], batch_size=5)
    assert DatasetRow.objects.filter(dataset__name="laion-crash").count() == 0  # nothing visible
    monkeypatch.undo()
    summary = import_files("laion-crash", [path], batch_size=5)
    assert summary.inserted == 20
    assert DatasetRow.objects.filter(dataset__name="laion-crash").count() == 20
