"""Verification's state changes: checking with a deadline, per-item verdicts, found copies, the sweeper."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from optout.models import DatasetRow
from requests_app.exceptions import TransitionError
from requests_app.models import ItemState, RemovalItem, RemovalRequest, RemovalState
from requests_app.services.transitions import SYSTEM, Actor, transition


def check_deadline(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.OPTOUT_CHECK_DEADLINE_SECONDS)


@transaction.atomic
def start_checking(removal: RemovalRequest) -> RemovalRequest:
    """received -> checking, with a deadline after which the sweeper re-queues it."""
    now = timezone.now()
    return transition(
        removal,
        RemovalState.CHECKING,
        actor=Actor(SYSTEM),
        now=now,
        check_deadline=check_deadline(now),
        check_attempts=removal.check_attempts + 1,
    )


@transaction.atomic
def finish_checking(removal: RemovalRequest) -> RemovalRequest:
    """checking -> in_review once every item has a verdict."""
    if removal.items.filter(state=ItemState.PENDING).exists():
        raise TransitionError(f"Case {removal.case} still has items waiting for verification.")
    return transition(removal, RemovalState.IN_REVIEW, actor=Actor(SYSTEM), check_deadline=None)


def count_verify_attempt(item: RemovalItem) -> int:
    """Count an attempt at verifying an item before it starts, in its own commit, so that a
    worker killed in the middle still counts. Returns the attempt number."""
    RemovalItem.objects.filter(pk=item.pk).update(verify_attempts=F("verify_attempts") + 1)
    item.verify_attempts = RemovalItem.objects.values_list("verify_attempts", flat=True).get(pk=item.pk)
    return item.verify_attempts


def requeue_stuck(now: datetime | None = None) -> list[int]:
    """Ids of requests whose verification was lost: still received or checking past their deadline
    (a message that never reached the broker, a worker killed mid-task). Each deadline is pushed
    back, with a compare-and-swap, so a request is queued once per deadline and only if it did not
    move on meanwhile."""
    now = now or timezone.now()
    stuck = RemovalRequest.objects.filter(
        state__in=[RemovalState.RECEIVED, RemovalState.CHECKING], check_deadline__lt=now
    ).values_list("pk", "check_deadline")
    ids = []
    for removal_id, deadline in stuck:
        if RemovalRequest.objects.filter(pk=removal_id, check_deadline=deadline).update(
            check_deadline=check_deadline(now)
        ):
            ids.append(removal_id)
    return ids


def record_item_verdict(item: RemovalItem, *, state: str, **evidence) -> bool:
    """Set a pending item's verdict. Returns False (and changes nothing) if it already had one."""
    if state == ItemState.PENDING:
        raise ValueError("a verdict cannot be 'pending'")
    updated = RemovalItem.objects.filter(pk=item.pk, state=ItemState.PENDING).update(
        state=state, verified_at=timezone.now(), **evidence
    )
    return updated == 1


def add_found_item(removal: RemovalRequest, row: DatasetRow, *, state: str, later: bool = False, **evidence) -> bool:
    """Attach a dataset row the index search found (``later``: after the case's first verification, as
    monitoring does). Returns False if the case already lists its URL: a row is never added twice."""
    now = timezone.now()
    _, created = RemovalItem.objects.get_or_create(
        removal=removal,
        url_sha256=row.url_sha256,
        defaults={
            "url": row.url,
            "dataset_row": row,
            "found_by_system": True,
            "state": state,
            "verified_at": now,
            "added_at": now if later else None,
            **evidence,
        },
    )
    return created
