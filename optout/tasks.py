from celery import shared_task
from django.utils import timezone

from optout.blocklist import releases
from optout.index import events, hashing
from optout.models import DatasetRow, WorkerHeartbeat


@shared_task(bind=True, ignore_result=True)
def record_heartbeat(self) -> None:
    worker = self.request.hostname or "unknown"
    WorkerHeartbeat.objects.update_or_create(worker=worker, defaults={"seen_at": timezone.now()})


@shared_task(acks_late=True, ignore_result=True)
def hash_rows(row_ids: list[int]) -> None:
    """Fill in the signals of these dataset rows. Rows already done are skipped, so a rerun is harmless."""
    descriptor = hashing.our_descriptor()
    datasets = set()
    for row in DatasetRow.objects.filter(pk__in=row_ids, hashed_at__isnull=True).order_by("id"):
        hashing.hash_row(row, descriptor=descriptor)
        datasets.add(row.dataset_id)
    for dataset_id in sorted(datasets):
        events.rows_gained_signals.send_robust(sender=DatasetRow, dataset_id=dataset_id, hashed=True)


@shared_task(acks_late=True, ignore_result=True)
def publish_blocklist() -> None:
    """Publish the next blocklist release (beat runs it every OPTOUT_PUBLISH_INTERVAL_MINUTES).

    A new release even when nothing changed: that re-signs the state with a fresh
    expiry. Publishers take a lock, so a duplicate delivery only makes one more release.
    """
    releases.publish_release()
