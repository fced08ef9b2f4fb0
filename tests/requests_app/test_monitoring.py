"""Monitoring by consent: rows that gain signals later are matched against monitored references."""

import csv
from datetime import timedelta

import pytest
from django.utils import timezone

from optout.imaging import ImageSignals, hashbits
from optout.index import hashing
from optout.index.importer import Columns, import_files
from optout.models import Dataset, DatasetRow
from requests_app import monitoring, services
from requests_app.exceptions import TransitionError
from requests_app.models import MonitorMark, ReferenceSignal, RemovalItem, RemovalRequest, RequestEvent
from tests.requests_app.builders import force_state, in_review, reference, reviewer, submit

pytestmark = pytest.mark.django_db

PHASH = 0x9F3A_5C71_0E24_B68D
NEAR = PHASH ^ 0b1011  # 3 bits away: within the threshold of 8
FAR = PHASH ^ ((1 << 40) - 1)


def write_rows(path, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "phash"])
        writer.writerows(rows)


def import_rows(tmp_path, name: str, rows) -> Dataset:
    path = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.csv"
    write_rows(path, [(url, f"{phash:016x}" if phash is not None else "") for url, phash in rows])
    import_files(name, [path], columns=Columns(phash="phash"))
    return Dataset.objects.get(name=name)


def monitored_published_case(**kwargs) -> RemovalRequest:
    removal = in_review(["match_strong"], references=[[reference(PHASH)]], **kwargs)
    monitoring.monitor_removal(removal, months=12, email="watch@example.org")
    services.approve_removal(removal, reviewer=reviewer())
    removal.refresh_from_db()
    services.transition(removal, "published", actor=services.Actor("system"))
    return RemovalRequest.objects.get(pk=removal.pk)


def test_a_copy_in_a_new_dataset_becomes_an_item_found_later_and_the_case_goes_back_to_review(
    tmp_path, mailoutbox, django_capture_on_commit_callbacks
):
    removal = monitored_published_case()
    dataset = import_rows(
        tmp_path,
        "datacomp-test",
        [("https://cdn.example.net/copy.jpg", NEAR), ("https://cdn.example.net/other.jpg", FAR)],
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = monitoring.scan_dataset(dataset.pk)

    assert (result.rows, result.found, result.reopened, result.done) == (2, 1, 1, True)
    removal.refresh_from_db()
    assert removal.state == "in_review"
    assert removal.reopened_at is not None
    found = removal.items.get(added_at__isnull=False)
    assert (found.url, found.found_by_system, found.state, found.decided_at) == (
        "https://cdn.example.net/copy.jpg",
        True,
        "match_weak",
        None,
    )
    assert found.phash_distance == 3
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["watch@example.org"]
    assert "1 new copy" in mailoutbox[0].body
    assert "cdn.example.net" not in mailoutbox[0].body
    mark = MonitorMark.objects.get(dataset=dataset)
    assert mark.imported_until_id == DatasetRow.objects.filter(dataset=dataset).order_by("-id").first().pk


def test_approving_the_copy_later_leaves_the_first_decision_as_it_was(tmp_path):
    removal = monitored_published_case()
    first = removal.items.get()
    dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    monitoring.scan_dataset(dataset.pk)
    removal.refresh_from_db()
    copy = removal.items.get(added_at__isnull=False)
    otto = reviewer("otto")
    services.decide_item(copy, reviewer=otto, decision="approve")  # found by the system: ticked to be blocked
    services.approve_removal(removal, reviewer=otto)
    assert set(removal.items.filter(blocked=True).values_list("url", flat=True)) == {
        first.url,
        "https://cdn.example.net/copy.jpg",
    }
    first.refresh_from_db()
    assert first.decided_at < removal.items.get(pk__gt=first.pk).decided_at


def test_a_second_scan_reads_nothing_and_a_row_is_never_added_twice(tmp_path):
    removal = monitored_published_case()
    dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    monitoring.scan_dataset(dataset.pk)
    again = monitoring.scan_dataset(dataset.pk)
    assert (again.rows, again.found) == (0, 0)
    # Even with the mark moved back (a redelivered chunk), the row is not added to the case again.
    MonitorMark.objects.filter(dataset=dataset).update(imported_until_id=0)
    replay = monitoring.scan_dataset(dataset.pk)
    assert (replay.rows, replay.found) == (1, 0)
    assert removal.items.filter(url="https://cdn.example.net/copy.jpg").count() == 1


def test_only_rows_past_the_mark_are_read(tmp_path):
    monitored_published_case()
    import_rows(
        tmp_path, "datacomp-test", [("https://cdn.example.net/1.jpg", FAR), ("https://cdn.example.net/2.jpg", FAR)]
    )
    dataset = Dataset.objects.get(name="datacomp-test")
    assert monitoring.scan_dataset(dataset.pk).rows == 2
    import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/3.jpg", NEAR)])
    result = monitoring.scan_dataset(dataset.pk)
    assert (result.rows, result.found) == (1, 1)


def test_a_large_batch_is_scanned_in_chunks(tmp_path):
    removal = monitored_published_case()
    rows = [(f"https://cdn.example.net/{n}.jpg", FAR) for n in range(5)] + [("https://cdn.example.net/copy.jpg", NEAR)]
    dataset = import_rows(tmp_path, "datacomp-test", rows)
    results = [monitoring.scan_dataset(dataset.pk, chunk_rows=2) for _ in range(4)]
    assert [(r.rows, r.done) for r in results] == [(2, False), (2, False), (2, True), (0, True)]
    assert removal.items.filter(added_at__isnull=False).count() == 1


def test_rows_a_worker_hashed_are_matched_once_they_have_settled(tmp_path):
    removal = monitored_published_case()
    dataset = import_rows(tmp_path, "laion-test", [("https://cdn.example.net/later.jpg", None)])
    assert monitoring.scan_dataset(dataset.pk).rows == 0  # no signals yet
    row = DatasetRow.objects.get(dataset=dataset)
    computed = ImageSignals(phash=NEAR, pdq=None, pdq_quality=0, sha256="ab" * 32)
    hashing.store_row_signals(row.pk, computed, descriptor=hashing.our_descriptor())
    assert monitoring.scan_dataset(dataset.pk).rows == 0  # hashed a moment ago: left to settle
    DatasetRow.objects.filter(pk=row.pk).update(hashed_at=timezone.now() - timedelta(minutes=5))

    result = monitoring.scan_dataset(dataset.pk)

    assert (result.rows, result.found) == (1, 1)
    assert removal.items.filter(url="https://cdn.example.net/later.jpg", added_at__isnull=False).exists()
    assert monitoring.scan_dataset(dataset.pk).rows == 0


def test_a_scan_that_dies_midway_leaves_the_mark_and_adds_nothing(tmp_path, monkeypatch):
    removal = monitored_published_case()
    dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    MonitorMark.objects.create(dataset=dataset, updated_at=timezone.now())

    original = services.add_found_item

    def add_then_die(*args, **kwargs):
        original(*args, **kwargs)
        raise SystemExit("worker killed")

    monkeypatch.setattr(services, "add_found_item", add_then_die)
    with pytest.raises(SystemExit):
        monitoring.scan_dataset(dataset.pk)
    assert MonitorMark.objects.get(dataset=dataset).imported_until_id == 0
    assert not removal.items.filter(added_at__isnull=False).exists()
    assert RemovalRequest.objects.get(pk=removal.pk).state == "published"

    monkeypatch.setattr(services, "add_found_item", original)
    assert monitoring.scan_dataset(dataset.pk).found == 1  # the next run resumes from the same mark


def test_cases_without_monitoring_or_ended_are_not_matched(tmp_path):
    unmonitored = in_review(["match_strong"], references=[[reference(PHASH)]])
    withdrawn = monitored_published_case()
    services.withdraw_removal(withdrawn)
    dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    result = monitoring.scan_dataset(dataset.pk)
    assert result.found == 0
    assert not RemovalItem.objects.filter(url="https://cdn.example.net/copy.jpg").exists()
    assert unmonitored.items.count() == 1


def test_a_case_in_review_gets_the_copy_without_changing_state(tmp_path):
    removal = in_review(["match_strong"], references=[[reference(PHASH)]])
    monitoring.monitor_removal(removal, months=3)
    dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    assert monitoring.scan_dataset(dataset.pk).reopened == 0
    assert RemovalRequest.objects.get(pk=removal.pk).state == "in_review"
    assert removal.items.filter(added_at__isnull=False).count() == 1


def test_an_import_queues_the_scan_on_commit(tmp_path, django_capture_on_commit_callbacks, monkeypatch):
    from requests_app import tasks

    sent = []
    monkeypatch.setattr(tasks.scan_new_rows, "apply_async", lambda args, countdown: sent.append((args, countdown)))
    with django_capture_on_commit_callbacks(execute=True):
        dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    assert sent == [((dataset.pk,), 0)]


def test_the_sweeper_ends_expired_monitoring_and_queues_datasets_past_their_marks(tmp_path, monkeypatch):
    from requests_app import tasks

    removal = monitored_published_case()
    dataset = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", FAR)])
    queued = []
    monkeypatch.setattr(tasks.scan_new_rows, "delay", queued.append)
    assert tasks.sweep_monitoring() == [dataset.pk]
    monitoring.scan_dataset(dataset.pk)
    assert tasks.sweep_monitoring() == []
    RemovalRequest.objects.filter(pk=removal.pk).update(monitor_until=timezone.now() - timedelta(seconds=1))

    tasks.sweep_monitoring()

    removal.refresh_from_db()
    assert (removal.monitor_until, removal.monitor_email) == (None, "")
    assert not ReferenceSignal.objects.filter(removal=removal).exists()  # published: the case is over
    assert RequestEvent.objects.filter(removal=removal, action="monitoring").latest("id").reason == (
        "monitoring period ended"
    )


# --- Consent ---------------------------------------------------------------------------


def test_withdrawal_ends_monitoring_and_deletes_the_references():
    removal, _ = submit(monitor_months=12, monitor_email="watch@example.org")
    assert monitoring.is_monitored(removal)
    services.withdraw_removal(removal)
    removal.refresh_from_db()
    assert (removal.monitor_until, removal.monitor_email) == (None, "")
    assert not ReferenceSignal.objects.filter(removal=removal).exists()


def test_monitoring_an_open_case_that_ends_keeps_the_references_until_the_case_closes():
    removal, _ = submit(monitor_months=6)
    monitoring.stop_monitoring(removal, actor=services.Actor("test"), reason="test")
    assert ReferenceSignal.objects.filter(removal=removal).exists()


def test_renewal_moves_the_end_and_is_recorded():
    removal, _ = submit(monitor_months=1)
    first_end = removal.monitor_until
    monitoring.monitor_removal(removal, months=24)
    removal.refresh_from_db()
    assert removal.monitor_until - first_end > timedelta(days=690)
    reasons = list(RequestEvent.objects.filter(removal=removal, action="monitoring").values_list("reason", flat=True))
    assert reasons[0].startswith("monitoring started") and reasons[1].startswith("monitoring renewed")


@pytest.mark.parametrize("months", [0, 25])
def test_a_period_out_of_range_is_refused(months):
    removal, _ = submit()
    with pytest.raises(TransitionError, match="1 to 24 months"):
        monitoring.monitor_removal(removal, months=months)


def test_an_ended_case_cannot_be_monitored():
    removal, _ = submit()
    force_state(removal, "withdrawn")
    with pytest.raises(TransitionError, match="cannot be monitored"):
        monitoring.monitor_removal(removal, months=12)


def test_monitoring_covers_every_dataset_whatever_the_case_named(tmp_path):
    laion = Dataset.objects.create(name="laion-test")
    removal = monitored_published_case(dataset=laion)
    other = import_rows(tmp_path, "datacomp-test", [("https://cdn.example.net/copy.jpg", NEAR)])
    assert monitoring.scan_dataset(other.pk).found == 1
    assert removal.items.filter(dataset_row__dataset=other).exists()


def test_the_reference_hex_survives_the_round_trip():
    removal, _ = submit(references=[[reference(PHASH)]], monitor_months=12)
    assert hashbits.phash_from_hex(removal.references.get().phash) == PHASH


def test_the_mark_moves_past_rows_without_signals(tmp_path):
    monitored_published_case()
    dataset = import_rows(tmp_path, "laion-test", [(f"https://cdn.example.net/{n}.jpg", None) for n in range(3)])
    assert monitoring.scan_dataset(dataset.pk).rows == 0
    last = DatasetRow.objects.filter(dataset=dataset).order_by("-id").first().pk
    assert MonitorMark.objects.get(dataset=dataset).imported_until_id == last
    assert monitoring.datasets_to_scan() == []  # nothing is walked over again
