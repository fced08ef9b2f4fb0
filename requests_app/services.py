"""Every change of a removal request's state goes through these functions.

Each transition checks the current state against ALLOWED_TRANSITIONS, updates
with a compare-and-swap (``filter(pk=..., state=old).update(...)``) so that of
two concurrent actors exactly one wins, appends a RequestEvent, and schedules
side effects with ``transaction.on_commit``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from optout import hashbits
from optout.client.canonical import url_sha256
from optout.models import Dataset, DatasetRow
from requests_app import cases
from requests_app.exceptions import TransitionError
from requests_app.models import (
    ALLOWED_TRANSITIONS,
    CLOSED_STATES,
    ItemState,
    ReferenceSignal,
    RemovalItem,
    RemovalRequest,
    RemovalState,
    RequestEvent,
)

REQUESTER = "requester"
SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    """Who acts: a reviewer (a user), the requester, or the system."""

    label: str
    user: object | None = None

    @classmethod
    def of(cls, user) -> "Actor":
        return cls(label=user.get_username(), user=user)


def _transition(
    removal: RemovalRequest,
    to: str,
    *,
    actor: Actor,
    reason: str = "",
    now: datetime | None = None,
    expected: str | None = None,
    **fields,
) -> RemovalRequest:
    now = now or timezone.now()
    current = expected or removal.state
    if to not in ALLOWED_TRANSITIONS[current]:
        raise TransitionError(
            f"Case {removal.case} is {RemovalState(current).label}; it cannot become {RemovalState(to).label}."
        )
    if to in CLOSED_STATES:
        fields["contact_email"] = ""
    updated = RemovalRequest.objects.filter(pk=removal.pk, state=current).update(
        state=to, state_changed_at=now, **fields
    )
    if updated != 1:
        raise TransitionError(
            f"Case {removal.case} was changed by someone else a moment ago. Reload it to see its current state."
        )
    RequestEvent.objects.create(
        removal=removal,
        actor=actor.user,
        actor_label=actor.label,
        from_state=current,
        to_state=to,
        reason=reason,
        created_at=now,
    )
    removal.state = to
    removal.state_changed_at = now
    for name, value in fields.items():
        setattr(removal, name, value)
    return removal


# --- Intake ---------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """Signals of one reference image, as the intake hands them over."""

    phash: int
    pdq: int | None
    pdq_quality: int
    sha256: str
    descriptor_key: str
    source: str  # ReferenceSignal.Source


@transaction.atomic
def submit_removal(
    *,
    urls: Sequence[str],
    references: Sequence[Sequence[Reference]],
    dataset: Dataset | None = None,
    contact_email: str = "",
) -> tuple[RemovalRequest, str]:
    """Create a removal request in state ``received`` and schedule its verification.

    ``references`` holds, per reference image, one or more signal sets. Returns
    the request and its secret, which is not stored and cannot be shown again.
    """
    now = timezone.now()
    secret = cases.new_secret()
    removal = RemovalRequest.objects.create(
        case=_unused_case_reference(),
        secret_hmac=cases.secret_hmac(secret),
        state=RemovalState.RECEIVED,
        dataset=dataset,
        contact_email=contact_email,
        created_at=now,
        state_changed_at=now,
    )
    seen: set[str] = set()
    items = []
    for url in urls:
        digest = url_sha256(url)
        if digest not in seen:
            seen.add(digest)
            items.append(RemovalItem(removal=removal, url=url, url_sha256=digest))
    RemovalItem.objects.bulk_create(items)
    ReferenceSignal.objects.bulk_create(
        ReferenceSignal(
            removal=removal,
            image_index=index,
            source=ref.source,
            phash=hashbits.phash_to_hex(ref.phash),
            pdq=hashbits.pdq_to_hex(ref.pdq) if ref.pdq is not None else "",
            pdq_quality=ref.pdq_quality,
            sha256=ref.sha256,
            descriptor_key=ref.descriptor_key,
        )
        for index, variants in enumerate(references)
        for ref in variants
    )
    RequestEvent.objects.create(
        removal=removal, actor_label=REQUESTER, from_state="", to_state=RemovalState.RECEIVED, created_at=now
    )
    _schedule_verification(removal)
    return removal, secret


def _unused_case_reference() -> str:
    for _ in range(5):
        case = cases.new_case_reference()
        if not RemovalRequest.objects.filter(case=case).exists():
            return case
    raise RuntimeError("could not draw an unused case reference")  # 60 random bits: never in practice


def _schedule_verification(removal: RemovalRequest) -> None:
    from requests_app.tasks import verify_removal

    removal_id = removal.pk

    def send() -> None:
        # A broker outage must not lose the request: it is in PostgreSQL already,
        # and the sweeper re-queues anything left in `received` or `checking`.
        try:
            verify_removal.delay(removal_id)
        except Exception:  # noqa: BLE001 (any broker failure)
            import logging

            logging.getLogger(__name__).warning("could not enqueue verification of request %s", removal_id)

    transaction.on_commit(send)


# --- Verification ---------------------------------------------------------


def check_deadline(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT * 2)


@transaction.atomic
def start_checking(removal: RemovalRequest) -> RemovalRequest:
    """received -> checking, with a deadline after which the sweeper re-queues it."""
    now = timezone.now()
    return _transition(
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
    return _transition(removal, RemovalState.IN_REVIEW, actor=Actor(SYSTEM), check_deadline=None)


def record_item_verdict(item: RemovalItem, *, state: str, **evidence) -> bool:
    """Set a pending item's verdict. Returns False (and changes nothing) if it already had one."""
    if state == ItemState.PENDING:
        raise ValueError("a verdict cannot be 'pending'")
    updated = RemovalItem.objects.filter(pk=item.pk, state=ItemState.PENDING).update(
        state=state, verified_at=timezone.now(), **evidence
    )
    return updated == 1


def add_found_item(removal: RemovalRequest, row: DatasetRow, *, state: str, **evidence) -> bool:
    """Attach a dataset row the index search found. Returns False if the case already lists its URL."""
    _, created = RemovalItem.objects.get_or_create(
        removal=removal,
        url_sha256=row.url_sha256,
        defaults={
            "url": row.url,
            "dataset_row": row,
            "found_by_system": True,
            "state": state,
            "verified_at": timezone.now(),
            **evidence,
        },
    )
    return created


# --- Requester acts -------------------------------------------------------------


@transaction.atomic
def withdraw_removal(removal: RemovalRequest, *, actor: Actor | None = None, reason: str = "") -> RemovalRequest:
    """Any state -> withdrawn. Deletes the contact e-mail. Raises TransitionError if already withdrawn."""
    return _transition(removal, RemovalState.WITHDRAWN, actor=actor or Actor(REQUESTER), reason=reason)


def find_case(case: str, secret: str) -> RemovalRequest | None:
    """The request for this case reference and secret, or None.

    A wrong secret and an unknown case look the same to the caller, and take
    the same time: the HMAC is computed either way.
    """
    reference = cases.normalise_case_reference(case)
    removal = RemovalRequest.objects.filter(case=reference).first() if reference else None
    stored = removal.secret_hmac if removal else "0" * 64
    if cases.secret_matches(secret, stored) and removal is not None:
        return removal
    return None
