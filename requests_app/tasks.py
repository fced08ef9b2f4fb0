import logging
import time

from celery import shared_task
from django.conf import settings

from config.outages import TRANSIENT_ERRORS
from requests_app import monitoring, retention, services, verification

log = logging.getLogger(__name__)

# A database or broker restart outlasts a few seconds: back off up to two minutes, ten times.
OUTAGE_RETRIES = 10


@shared_task(bind=True, acks_late=True, ignore_result=True)
def verify_removal(self, removal_id: int) -> None:
    """Verify a removal request's items. Takes an id, re-checks state, safe to run twice.

    A transient failure (an unreachable URL, PostgreSQL or Redis restarting) is
    retried with backoff; the per-item attempt count ends the retries on a URL, and
    the sweeper re-queues anything a lost message or a killed worker left behind.
    """
    retries = self.request.retries or 0
    try:
        done = verification.run_verification(removal_id)
    except TRANSIENT_ERRORS as exc:
        log.warning("verification of request %s met an outage (%s); retrying", removal_id, type(exc).__name__)
        raise self.retry(countdown=min(120, 2 * 2**retries), max_retries=OUTAGE_RETRIES) from None
    if not done and retries < settings.OPTOUT_VERIFY_MAX_ATTEMPTS:
        raise self.retry(countdown=min(600, 15 * 2**retries))


@shared_task(ignore_result=True)
def sweep_stuck_requests() -> list[int]:
    """Beat task: queue again every request whose verification was lost. Returns their ids."""
    ids = services.requeue_stuck()
    for removal_id in ids:
        log.info("re-queueing verification of request %s", removal_id)
        verify_removal.delay(removal_id)
    return ids


# A scan task hands over to a fresh message after this long, so one large import never holds a
# worker (or a broker visibility timeout) for hours; each chunk has committed by then.
SCAN_TASK_SECONDS = 240


@shared_task(bind=True, acks_late=True, ignore_result=True)
def scan_new_rows(self, dataset_id: int) -> None:
    """Match a dataset's rows that gained signals against the monitored references, chunk by chunk.

    Takes an id; each chunk commits with its high-water mark, so a redelivery after a killed worker
    starts where the last commit left off, and a second copy of the task waits for the first's lock.
    """
    deadline = time.monotonic() + SCAN_TASK_SECONDS
    watched = None
    while True:
        result = monitoring.scan_dataset(dataset_id, watched=watched)
        watched = result.watched
        if result.found:
            log.info("monitoring found %s copies in dataset %s", result.found, dataset_id)
        if result.done:
            return
        if time.monotonic() > deadline:
            scan_new_rows.delay(dataset_id)
            return


@shared_task(ignore_result=True)
def sweep_monitoring() -> list[int]:
    """Beat task: end expired monitoring, and queue a scan of every dataset with rows past its marks
    (a lost message, a killed worker, rows hashed while a scan let them settle). Returns those ids."""
    monitoring.end_expired()
    ids = monitoring.datasets_to_scan()
    for dataset_id in ids:
        scan_new_rows.delay(dataset_id)
    return ids


@shared_task(ignore_result=True)
def purge_closed_cases() -> None:
    """Beat task (daily): cut closed cases down to what the audit trail needs (requests_app/retention.py)."""
    purged = retention.purge_closed_cases()
    log.info(
        "retention: %s reference signal sets, %s item URLs and %s contact addresses deleted",
        purged.reference_signals,
        purged.item_urls,
        purged.contacts,
    )
