"""Nothing monitoring finds is lost to a worker SIGKILLed mid-scan, and nothing is found twice.

A real Celery worker runs the scan the import queued. The test holds a lock on one of the
monitored cases from a connection of its own, so the scan is caught inside its transaction:
the rows read and matched, the copies about to be added. The worker is killed there; the mark
stays where it was and no copy is added. The sweeper then queues the dataset again and a
second worker finishes the scan; a replay of the scan (the killed task's message delivered
again) adds nothing.
"""

import csv
import signal

import psycopg2
import pytest
from django.db import connection

from optout.index.importer import Columns, import_files
from optout.models import DatasetRow
from requests_app import monitoring, services, tasks
from requests_app.models import MonitorMark, RemovalItem, RemovalRequest
from tests.e2e.conftest import WorkerProcess, test_database_url, wait_for
from tests.requests_app.builders import force_state, in_review, reference, reviewer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

PHASHES = (0x9F3A_5C71_0E24_B68D, 0x1B7E_44A2_C90F_3D65)


def monitored_published_case(phash: int) -> RemovalRequest:
    removal = in_review(["match_strong"], references=[[reference(phash)]])
    monitoring.monitor_removal(removal, months=12)
    services.approve_removal(removal, reviewer=reviewer(f"rita-{phash % 1000}"))
    return force_state(removal, "published")


def blocked_scans() -> int:
    """Backends of this database waiting for a row lock in a SELECT ... FOR UPDATE (a scan adding copies)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE %s",
            ["%requests_app_removalrequest%FOR UPDATE%"],
        )
        return cursor.fetchone()[0]


def found_later(removal: RemovalRequest) -> list[str]:
    return list(RemovalItem.objects.filter(removal=removal, added_at__isnull=False).values_list("url", flat=True))


def test_a_worker_killed_mid_scan_leaves_the_mark_and_the_sweeper_resumes(tmp_path):
    first, second = (monitored_published_case(phash) for phash in PHASHES)
    path = tmp_path / "crawl.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "phash"])
        writer.writerow(["https://cdn.example.net/first.jpg", f"{PHASHES[0] ^ 0b101:016x}"])
        writer.writerow(["https://cdn.example.net/second.jpg", f"{PHASHES[1] ^ 0b11:016x}"])
        for n in range(200):
            writer.writerow([f"https://cdn.example.net/other/{n}.jpg", f"{(n * 0x9E3779B97F4A7C15) % (1 << 64):016x}"])

    killed = WorkerProcess(tmp_path / "killed.log")
    killed.start()
    from config.celery import app

    app.control.purge()
    holder = psycopg2.connect(test_database_url())
    try:
        with holder.cursor() as cursor:  # psycopg2 opens a transaction: the lock is held until the rollback
            cursor.execute("SELECT id FROM requests_app_removalrequest WHERE id = %s FOR UPDATE", [second.pk])
        # The import's signal queues the scan; the worker reads the rows, matches them, and waits for the lock.
        import_files("crawl-e2e", [path], columns=Columns(phash="phash"))
        wait_for(blocked_scans, timeout=120, message=lambda: "the scan to reach the copies\n" + killed.log())
        killed.stop(signal.SIGKILL)
    finally:
        holder.rollback()
        holder.close()

    dataset_id = DatasetRow.objects.get(url="https://cdn.example.net/first.jpg").dataset_id
    assert MonitorMark.objects.get(dataset_id=dataset_id).imported_until_id == 0  # where it was
    assert found_later(first) == found_later(second) == []
    assert [RemovalRequest.objects.get(pk=r.pk).state for r in (first, second)] == ["published", "published"]
    assert "scan_new_rows" in killed.log()

    resumed = WorkerProcess(tmp_path / "resumed.log")
    resumed.start()
    try:
        # What Celery beat does every OPTOUT_MONITOR_SWEEP_MINUTES: the dataset is past its mark.
        assert tasks.sweep_monitoring() == [dataset_id]
        last_row = DatasetRow.objects.filter(dataset_id=dataset_id).order_by("-id").first().pk
        wait_for(
            lambda: MonitorMark.objects.get(dataset_id=dataset_id).imported_until_id == last_row,
            timeout=120,
            message=lambda: "the resumed scan\n" + resumed.log(),
        )
        assert found_later(first) == ["https://cdn.example.net/first.jpg"]
        assert found_later(second) == ["https://cdn.example.net/second.jpg"]
        assert [RemovalRequest.objects.get(pk=r.pk).state for r in (first, second)] == ["in_review", "in_review"]

        # The killed task's message delivered again (after the broker's visibility timeout) scans the same
        # rows from the old mark: nothing is added twice, and the cases stay as they are.
        assert tasks.sweep_monitoring() == []
        MonitorMark.objects.filter(dataset_id=dataset_id).update(imported_until_id=0)
        tasks.scan_new_rows.delay(dataset_id)
        wait_for(
            lambda: MonitorMark.objects.get(dataset_id=dataset_id).imported_until_id == last_row,
            timeout=60,
            message=lambda: "the replayed scan\n" + resumed.log(),
        )
    finally:
        resumed.stop()
    assert found_later(first) == ["https://cdn.example.net/first.jpg"]
    assert found_later(second) == ["https://cdn.example.net/second.jpg"]
    assert RemovalItem.objects.filter(removal__in=[first, second], added_at__isnull=False).count() == 2
