import pytest
from django.db import transaction
from django.utils import timezone

from optout.models import WorkerHeartbeat
from optout.tasks import record_heartbeat
from tests.e2e.conftest import wait_for


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_a_task_enqueued_on_commit(celery_worker_process):
    enqueued_at = timezone.now()
    with transaction.atomic():
        transaction.on_commit(record_heartbeat.delay)
        # Nothing is sent before the commit: the worker cannot see the row yet.
        assert not WorkerHeartbeat.objects.exists()

    beat = wait_for(
        lambda: WorkerHeartbeat.objects.filter(worker=celery_worker_process.name).first(),
        timeout=60,
        message=lambda: "the worker to write its heartbeat\n" + celery_worker_process.log(),
    )
    # The worker wrote the row itself, after the commit, within the wait.
    assert enqueued_at <= beat.seen_at <= timezone.now()
