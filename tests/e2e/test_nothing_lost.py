"""Nothing a requester filed is lost to a killed worker or an unreachable broker."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from requests_app import services, tasks
from requests_app.models import ItemState, RemovalRequest, RequestEvent
from tests import images
from tests.e2e.conftest import ROOT, WorkerProcess, test_database_url, wait_for
from tests.requests_app.test_verification import reference_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def in_review(case_id: int, worker: WorkerProcess, timeout: float = 90) -> RemovalRequest:
    return wait_for(
        lambda: RemovalRequest.objects.filter(pk=case_id, state="in_review").first(),
        timeout=timeout,
        message=lambda: "the request to reach review\n" + worker.log(),
    )


def test_a_worker_killed_mid_verification_loses_nothing(image_server, tmp_path, settings):
    photo = images.photo_jpeg("coffee")
    image_server.add_stall("/slow.jpg", during="body")
    image_server.add("/fine.jpg", photo, content_type="image/jpeg")
    first = WorkerProcess(tmp_path / "first.log")
    # A short deadline, so the sweeper may re-queue the request within the test.
    first.start(extra_env={"OPTOUT_CHECK_DEADLINE_SECONDS": "5"})
    from config.celery import app

    app.control.purge()
    with transaction.atomic():
        removal, _ = services.submit_removal(
            urls=[image_server.url("/slow.jpg"), image_server.url("/fine.jpg")], references=[[reference_of(photo)]]
        )

    wait_for(lambda: image_server.hits["/slow.jpg"] >= 1, timeout=60, message=lambda: "the fetch\n" + first.log())
    time.sleep(0.5)  # well inside the stalled download
    first.stop(signal.SIGKILL)
    assert RemovalRequest.objects.get(pk=removal.pk).state == "checking"

    image_server.add("/slow.jpg", photo, content_type="image/jpeg")  # the site answers again
    second = WorkerProcess(tmp_path / "second.log")
    second.start(extra_env={"OPTOUT_CHECK_DEADLINE_SECONDS": "5"})
    try:
        settings.OPTOUT_CHECK_DEADLINE_SECONDS = 5
        # What Celery beat does every minute, here every second until the deadline has passed.
        wait_for(tasks.sweep_stuck_requests, timeout=30, interval=1, message=lambda: "the sweeper")
        reviewed = in_review(removal.pk, second)
    finally:
        second.stop()

    items = list(reviewed.items.order_by("id"))
    assert [item.state for item in items] == [ItemState.MATCH_STRONG, ItemState.MATCH_STRONG]
    assert items[0].verify_attempts == 2  # the killed attempt counted
    to_review = RequestEvent.objects.filter(removal=reviewed, to_state="in_review")
    assert to_review.count() == 1


def test_a_request_filed_while_the_broker_is_down_is_verified_later(image_server, tmp_path):
    photo = images.photo_jpeg("chelsea")
    image_server.add("/cat.jpg", photo, content_type="image/jpeg")
    # Submit from another process whose broker is unreachable: the request must still be accepted.
    script = f"""
import django, json
django.setup()
from django.db import transaction
from requests_app import services
from tests.requests_app.test_verification import reference_of
from tests import images
with transaction.atomic():
    removal, secret = services.submit_removal(urls=[{image_server.url("/cat.jpg")!r}],
                                              references=[[reference_of(images.photo_jpeg("chelsea"))]])
print(json.dumps({{"id": removal.pk}}))
"""
    env = dict(
        os.environ,
        DATABASE_URL=test_database_url(),
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "could not enqueue verification" in result.stderr
    removal_id = json.loads(result.stdout.strip().splitlines()[-1])["id"]
    assert RemovalRequest.objects.get(pk=removal_id).state == "received"

    worker = WorkerProcess(tmp_path / "worker.log")
    worker.start()
    try:
        time.sleep(2)
        assert RemovalRequest.objects.get(pk=removal_id).state == "received"  # nothing was queued
        # The grace period is over (here: made over): beat's sweeper queues it.
        RemovalRequest.objects.filter(pk=removal_id).update(check_deadline=timezone.now() - timedelta(seconds=1))
        assert tasks.sweep_stuck_requests() == [removal_id]
        reviewed = in_review(removal_id, worker)
    finally:
        worker.stop()
    assert reviewed.items.get().state == ItemState.MATCH_STRONG
