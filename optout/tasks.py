from celery import shared_task
from django.utils import timezone

from optout.models import WorkerHeartbeat


@shared_task(bind=True, ignore_result=True)
def record_heartbeat(self) -> None:
    worker = self.request.hostname or "unknown"
    WorkerHeartbeat.objects.update_or_create(worker=worker, defaults={"seen_at": timezone.now()})
