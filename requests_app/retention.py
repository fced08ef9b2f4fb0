"""What a case keeps once it is over, and when the rest is deleted.

Reference signals are perceptual hashes of a private picture: they are kept only while a decision may
still need them. A withdrawn case loses them at once (``withdraw_removal``); a rejected or published
case when its appeal window (``OPTOUT_APPEAL_WINDOW_DAYS``) has passed, unless the requester asked us to
keep monitoring new datasets for it (``requests_app/monitoring.py``), until that ends. After the retention period (``OPTOUT_RETENTION_DAYS``) a
closed case is cut down to what the audit trail needs: the URLs of items that were never blocked (with the
hashes of their pictures) and any contact data go; the case, its items' verdicts and distances, its events
(append-only) and the blocklist holds stay. ``purge_closed_cases`` runs daily from Celery beat.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from requests_app.models import CLOSED_STATES, ReferenceSignal, RemovalItem, RemovalRequest, RemovalState


@dataclass(frozen=True)
class Purged:
    reference_signals: int
    item_urls: int
    contacts: int


def expired_reference_signals(now: datetime):
    """Reference signals no decision can need any more: of withdrawn and reversed cases, and of rejected or
    published cases past their appeal window; never those of a case still being monitored."""
    window_start = now - timedelta(days=settings.OPTOUT_APPEAL_WINDOW_DAYS)
    ended = Q(removal__state__in=[RemovalState.WITHDRAWN, RemovalState.REVERSED]) | Q(
        removal__state__in=[RemovalState.REJECTED, RemovalState.PUBLISHED],
        removal__state_changed_at__lt=window_start,
    )
    monitored = Q(removal__monitor_until__gt=now)
    return ReferenceSignal.objects.filter(ended).exclude(monitored)


@transaction.atomic
def purge_closed_cases(now: datetime | None = None) -> Purged:
    """Delete what closed cases no longer need (see the module docstring). Idempotent."""
    now = now or timezone.now()
    references, _ = ReferenceSignal.objects.filter(pk__in=expired_reference_signals(now).values("pk")).delete()
    cutoff = now - timedelta(days=settings.OPTOUT_RETENTION_DAYS)
    retired = RemovalRequest.objects.filter(state__in=CLOSED_STATES, state_changed_at__lt=cutoff)
    item_urls = (
        RemovalItem.objects.filter(removal__in=retired, blocked=False)
        .exclude(url="", image_sha256="", image_phash="", image_pdq="")
        .update(url="", image_sha256="", image_phash="", image_pdq="", image_pdq_quality=None)
    )
    contacts = retired.exclude(contact_email="").update(contact_email="")
    return Purged(reference_signals=references, item_urls=item_urls, contacts=contacts)
