"""Operational endpoints that belong to no app."""

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from optout.models import WorkerHeartbeat


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def _broker_ok() -> bool:
    """Whether the broker answers now. No retry: kombu's first one waits 2 s, so a check made during an outage
    answered 200 if the broker was back by then (and every check took 2 s while it was down)."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=2)
        return True
    except Exception:
        return False


@require_GET
@never_cache
def healthz(request):
    database = _database_ok()
    broker = _broker_ok()
    body = {"database": "ok" if database else "down", "broker": "ok" if broker else "down"}
    if database:
        last = WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True).first()
        body["worker_seen_seconds_ago"] = None if last is None else round((timezone.now() - last).total_seconds())
    return JsonResponse(body, status=200 if database and broker else 503)
