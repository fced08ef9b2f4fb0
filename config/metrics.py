"""The Prometheus metrics endpoint, ``GET /metrics``: for staff, or with ``OPTOUT_METRICS_TOKEN``.

Two kinds of figures:
- counted in the web processes as requests pass: feed and lookup API requests by endpoint and
  status. Under gunicorn every worker counts its own; ``config/gunicorn.py`` points
  ``PROMETHEUS_MULTIPROC_DIR`` at a folder they share, and a scrape adds them up.
- read from PostgreSQL at scrape time, so they are right whichever process did the work
  (web, worker, beat, another machine): cases by state, the age of the oldest case in each
  queue, items by verdict, verification time, the latest release, and the Celery queue depth
  read from the broker.

Nothing here is per requester: no case reference, no hash, no address.
"""

import hmac
import os
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import ChannelError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from config.celery import app as celery_app
from optout.models import Release
from requests_app.models import ItemState, RemovalItem, RemovalRequest, RemovalState, RequestEvent

# The routes whose answers are counted, by URL name, under a short label.
COUNTED_ROUTES = {
    "optout:feed-public": "feed_public",
    "optout:feed-partner": "feed_partner",
    "optout:public-key": "public_key",
    "optout:api-lookup": "lookup",
}
HTTP_REQUESTS = Counter(
    "optout_http_requests", "Feed and lookup API requests answered, by endpoint and status.", ["endpoint", "status"]
)

# The states a case waits in for someone (a worker, a reviewer, the next release).
QUEUES = (RemovalState.RECEIVED, RemovalState.CHECKING, RemovalState.IN_REVIEW, RemovalState.APPROVED)
VERIFICATION_WINDOW = timedelta(hours=1)
VERIFICATION_SAMPLE = 5000  # the most recent verifications a scrape looks at, at most
QUANTILES = (0.5, 0.95, 0.99, 1.0)


class RequestCountMiddleware:
    """Counts the answers of the feed and the lookup API, 503s of an outage included."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        endpoint = COUNTED_ROUTES.get(match.view_name) if match else None
        if endpoint:
            HTTP_REQUESTS.labels(endpoint=endpoint, status=str(response.status_code)).inc()
        return response


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def verification_seconds(now) -> list[float]:
    """How long each verification that ended in the last hour took (checking -> in_review), sorted."""
    ended = list(
        RequestEvent.objects.filter(
            to_state=RemovalState.IN_REVIEW, from_state=RemovalState.CHECKING, created_at__gte=now - VERIFICATION_WINDOW
        )
        .order_by("-created_at")
        .values_list("removal_id", "created_at")[:VERIFICATION_SAMPLE]
    )
    started: dict[int, list] = {}
    for removal_id, at in RequestEvent.objects.filter(
        removal_id__in={removal_id for removal_id, _ in ended},
        to_state=RemovalState.CHECKING,
        action=RequestEvent.Action.TRANSITION,
    ).values_list("removal_id", "created_at"):
        started.setdefault(removal_id, []).append(at)
    durations = []
    for removal_id, end in ended:
        begins = [at for at in started.get(removal_id, []) if at <= end]
        if begins:
            durations.append((end - max(begins)).total_seconds())
    return sorted(durations)


def celery_queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue, or None when the broker cannot be reached."""
    names = {celery_app.conf.task_default_queue} | {queue.name for queue in celery_app.conf.task_queues or ()}
    depths = {}
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for name in sorted(names):
                try:
                    depths[name] = channel.queue_declare(name, passive=True).message_count
                except ChannelError:  # Redis keeps no key for an empty queue
                    depths[name] = 0
    except Exception:  # noqa: BLE001 (any broker failure: reported as broker_up 0)
        return None
    return depths


class StateCollector:
    """Figures read from PostgreSQL and the broker at each scrape."""

    def collect(self):
        now = timezone.now()
        cases = GaugeMetricFamily("optout_cases", "Removal requests by state.", labels=["state"])
        by_state = dict(RemovalRequest.objects.values_list("state").annotate(n=Count("id")).order_by())
        for state in RemovalState:
            cases.add_metric([state.value], by_state.get(state.value, 0))
        yield cases

        oldest = GaugeMetricFamily(
            "optout_queue_oldest_age_seconds",
            "Age of the oldest case waiting in each state (0: none).",
            labels=["queue"],
        )
        since = dict(
            RemovalRequest.objects.filter(state__in=QUEUES)
            .values_list("state")
            .annotate(oldest=Min("state_changed_at"))
            .order_by()
        )
        for state in QUEUES:
            oldest.add_metric([state.value], (now - since[state.value]).total_seconds() if state.value in since else 0)
        yield oldest

        items = GaugeMetricFamily("optout_items", "Items of removal requests by verdict.", labels=["verdict"])
        by_verdict = dict(RemovalItem.objects.values_list("state").annotate(n=Count("id")).order_by())
        for verdict in ItemState:
            items.add_metric([verdict.value], by_verdict.get(verdict.value, 0))
        yield items

        durations = verification_seconds(now)
        verification = GaugeMetricFamily(
            "optout_verification_seconds",
            "Verification time (checking to in review) of the cases verified in the last hour.",
            labels=["quantile"],
        )
        for q in QUANTILES:
            verification.add_metric([str(q)], _quantile(durations, q) if durations else 0)
        yield verification
        yield GaugeMetricFamily(
            "optout_verifications_last_hour", "Cases whose verification ended in the last hour.", value=len(durations)
        )

        release = Release.objects.order_by("-version").only("version", "created_at", "entries").first()
        yield GaugeMetricFamily(
            "optout_release_version",
            "Number of the latest release (0: none yet).",
            value=release.version if release else 0,
        )
        yield GaugeMetricFamily(
            "optout_release_age_seconds",
            "Seconds since the latest release was made (0: none yet).",
            value=(now - release.created_at).total_seconds() if release else 0,
        )
        yield GaugeMetricFamily(
            "optout_release_entries",
            "Entries in the latest release's snapshot.",
            value=release.entries if release else 0,
        )

        depths = celery_queue_depths()
        yield GaugeMetricFamily(
            "optout_broker_up", "1 if the Celery broker answered.", value=0 if depths is None else 1
        )
        depth = GaugeMetricFamily(
            "optout_celery_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        for name, count in (depths or {}).items():
            depth.add_metric([name], count)
        yield depth


def _allowed(request) -> bool:
    token = settings.OPTOUT_METRICS_TOKEN
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff)


def exposition() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector())
    return generate_latest(counted) + generate_latest(state)


@require_GET
@never_cache
def metrics(request):
    if not _allowed(request):
        response = HttpResponse("Staff only, or Authorization: Bearer <OPTOUT_METRICS_TOKEN>.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="optout-metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
