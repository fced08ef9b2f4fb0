"""Monitoring end to end, with a real worker: a published, monitored case; a new dataset with a copy is imported;
the copy appears as a new item; the case goes back to review; the reviewer approves the copy; the next release
blocks it."""

import csv

import pytest
from django.db import transaction

from optout.blocklist import releases
from optout.imaging import hashbits
from optout.index.importer import Columns, import_files
from optout.models import BlocklistEntry
from requests_app import services
from requests_app.models import RemovalItem, RemovalRequest, RequestEvent
from tests import images
from tests.e2e.conftest import wait_for
from tests.optout.conftest import feed_files, lines, signing_key  # noqa: F401 (fixtures)
from tests.requests_app.builders import reviewer
from tests.requests_app.test_verification import reference_of, signals_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def publish(storage):
    with transaction.atomic():
        return releases.publish_release(storage=storage)


def partner_snapshot(storage, release) -> set[str]:
    return {line["key"] for line in lines(storage, "partner", releases.snapshot_name(release.version))}


def test_a_copy_in_a_new_dataset_is_found_reviewed_and_blocked(
    celery_worker_process,
    image_server,
    tmp_path,
    feed_files,  # noqa: F811 (fixtures imported above)
    signing_key,  # noqa: F811
):
    photo = images.photo_jpeg("astronaut")
    image_server.add("/mine.jpg", photo, content_type="image/jpeg")
    with transaction.atomic():
        removal, _secret = services.submit_removal(
            urls=[image_server.url("/mine.jpg")], references=[[reference_of(photo)]], monitor_months=12
        )
    removal = wait_for(
        lambda: RemovalRequest.objects.filter(pk=removal.pk, state="in_review").first(),
        timeout=120,
        message=lambda: "verification\n" + celery_worker_process.log(),
    )
    rita = reviewer("rita")
    services.approve_removal(removal, reviewer=rita)
    first_release = publish(feed_files)
    assert RemovalRequest.objects.get(pk=removal.pk).state == "published"
    first_key = removal.items.get().url_sha256
    assert partner_snapshot(feed_files, first_release) == {first_key}

    # A new crawl carries a recompressed, smaller copy of the picture, with img2dataset-style hash columns.
    copy = signals_of(images.photo_jpeg("astronaut", size=(320, 240), quality=60))
    path = tmp_path / "datacomp.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "phash", "pdq", "pdq_quality", "sha256"])
        writer.writerow(
            ["https://cdn.example.net/a/copy.jpg", f"{copy.phash:016x}", hashbits.pdq_to_hex(copy.pdq), 90, copy.sha256]
        )
        for n in range(50):
            writer.writerow(
                [f"https://cdn.example.net/other/{n}.jpg", f"{(n * 0x9E3779B97F4A7C15) % (1 << 64):016x}", "", "", ""]
            )
    import_files(
        "datacomp-e2e", [path], columns=Columns(phash="phash", pdq="pdq", pdq_quality="pdq_quality", sha256="sha256")
    )

    # The import's signal queued the scan on commit; the worker runs it.
    found = wait_for(
        lambda: RemovalItem.objects.filter(removal=removal, added_at__isnull=False).first(),
        timeout=120,
        message=lambda: "the monitoring scan\n" + celery_worker_process.log(),
    )
    assert (found.url, found.found_by_system, found.decided_at) == ("https://cdn.example.net/a/copy.jpg", True, None)
    assert found.state in ("match_strong", "match_weak")
    removal.refresh_from_db()
    assert removal.state == "in_review"
    assert removal.reopened_at is not None
    event = RequestEvent.objects.filter(removal=removal, to_state="in_review").latest("id")
    assert (event.from_state, event.actor_label) == ("published", "system")

    otto = reviewer("otto")
    services.decide_item(found, reviewer=otto, decision="approve")
    services.approve_removal(removal, reviewer=otto)
    second_release = publish(feed_files)

    assert partner_snapshot(feed_files, second_release) == {first_key, found.url_sha256}
    assert BlocklistEntry.objects.filter(url_sha256=found.url_sha256, blocked=True).exists()
    assert RemovalRequest.objects.get(pk=removal.pk).state == "published"
