"""Every change of a removal request's state goes through these functions.

Each transition checks the current state against ALLOWED_TRANSITIONS, updates
with a compare-and-swap (``filter(pk=..., state=old).update(...)``) so that of
two concurrent actors exactly one wins, appends a RequestEvent, and schedules
side effects with ``transaction.on_commit``.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from optout.blocklist import holds
from optout.client.canonical import url_sha256
from optout.imaging import hashbits
from optout.models import Dataset, DatasetRow
from requests_app import cases
from requests_app.exceptions import TransitionError
from requests_app.models import (
    ALLOWED_TRANSITIONS,
    CLOSED_STATES,
    ItemDecision,
    ItemState,
    ReferenceSignal,
    RejectReason,
    RemovalItem,
    RemovalRequest,
    RemovalState,
    RequestEvent,
)

log = logging.getLogger(__name__)

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


def _swap(removal: RemovalRequest, still_unchanged, **fields) -> None:
    """Compare and swap: update the one row ``still_unchanged`` matches if nobody changed it since we read
    it, else raise ``TransitionError`` (of two concurrent reviewers, exactly one wins)."""
    if still_unchanged.update(**fields) != 1:
        raise TransitionError(
            f"Case {removal.case} was changed by someone else a moment ago. Reload it to see its current state."
        )


def _transition(
    removal: RemovalRequest,
    to: str,
    *,
    actor: Actor,
    reason: str = "",
    now: datetime | None = None,
    **fields,
) -> RemovalRequest:
    now = now or timezone.now()
    current = removal.state
    if to not in ALLOWED_TRANSITIONS[current]:
        raise TransitionError(
            f"Case {removal.case} is {RemovalState(current).label}; it cannot become {RemovalState(to).label}."
        )
    if to in CLOSED_STATES:
        fields["contact_email"] = ""
    _swap(
        removal, RemovalRequest.objects.filter(pk=removal.pk, state=current), state=to, state_changed_at=now, **fields
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
    sha256: str  # "" for a variant
    descriptor_key: str
    source: str  # ReferenceSignal.Source
    variant: str = ""  # optout.imaging.variants name; "" the picture itself


@transaction.atomic
def submit_removal(
    *,
    urls: Sequence[str],
    references: Sequence[Sequence[Reference]],
    dataset: Dataset | None = None,
    contact_email: str = "",
    monitor_months: int = 0,
    monitor_email: str = "",
) -> tuple[RemovalRequest, str]:
    """Create a removal request in state ``received`` and schedule its verification.

    ``references`` holds, per reference image, one or more signal sets. With
    ``monitor_months``, new dataset rows are watched for copies that long (see
    ``monitoring``). Returns the request and its secret, which is not stored and
    cannot be shown again.
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
        # Picked up by a worker well before this, or queued again by the sweeper.
        check_deadline=now + timedelta(seconds=settings.OPTOUT_RECEIVED_GRACE_SECONDS),
    )
    seen: set[str] = set()
    items = []
    for url in urls:
        digest = url_sha256(url)
        if digest not in seen:
            seen.add(digest)
            items.append(RemovalItem(removal=removal, url=url, url_sha256=digest))
    RemovalItem.objects.bulk_create(items)
    store_references(removal, references)
    RequestEvent.objects.create(
        removal=removal, actor_label=REQUESTER, from_state="", to_state=RemovalState.RECEIVED, created_at=now
    )
    if monitor_months:
        from requests_app import monitoring  # imported here: monitoring builds on these services

        monitoring.monitor_removal(removal, months=monitor_months, email=monitor_email)
    _schedule_verification(removal)
    return removal, secret


def store_references(
    removal: RemovalRequest, references: Sequence[Sequence[Reference]], *, first_index: int = 0
) -> None:
    """Keep the signals of each reference image (never the image), numbered from ``first_index``."""
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
            variant=ref.variant,
        )
        for index, variants in enumerate(references, start=first_index)
        for ref in variants
    )


def _unused_case_reference() -> str:
    for _ in range(5):
        case = cases.new_case_reference()
        if not RemovalRequest.objects.filter(case=case).exists():
            return case
    raise RuntimeError("could not draw an unused case reference")  # 60 random bits: never in practice


def _schedule_verification(removal: RemovalRequest) -> None:
    # Imported here to break the one real cycle: tasks -> verification -> services -> tasks.
    from requests_app.tasks import verify_removal

    removal_id = removal.pk

    def send() -> None:
        # A broker outage must not lose the request: it is in PostgreSQL already,
        # and the sweeper re-queues anything left in `received` or `checking`.
        try:
            verify_removal.delay(removal_id)
        except Exception:  # noqa: BLE001 (any broker failure)
            log.warning("could not enqueue verification of request %s; the sweeper will", removal_id)

    transaction.on_commit(send)


# --- Verification ---------------------------------------------------------


def check_deadline(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.OPTOUT_CHECK_DEADLINE_SECONDS)


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


# --- Review ---------------------------------------------------------------------

REVIEW_PERMISSION = "requests_app.review_removalrequest"
MATCH_STATES = (ItemState.MATCH_STRONG, ItemState.MATCH_WEAK)
# States in which a reviewer decides: a case's first review (or a re-opened one), and an appeal.
DECIDING_STATES = (RemovalState.IN_REVIEW, RemovalState.APPEALED)


def _require_reviewer(reviewer) -> Actor:
    if not reviewer.has_perm(REVIEW_PERMISSION):
        raise PermissionDenied("Only reviewers can decide removal requests.")
    return Actor.of(reviewer)


def _log(removal: RemovalRequest, actor: Actor, action: str, reason: str) -> None:
    RequestEvent.objects.create(
        removal=removal,
        actor=actor.user,
        actor_label=actor.label,
        from_state=removal.state,
        to_state=removal.state,
        action=action,
        reason=reason,
        created_at=timezone.now(),
    )


@transaction.atomic
def claim_removal(removal: RemovalRequest, *, reviewer, on_deciding: bool = False) -> RemovalRequest:
    """Assign a request in review (or appealed) to this reviewer (taking it over if someone else had it).

    ``on_deciding``: the claim is part of a decision (approving or rejecting claims the case first),
    and the event says so."""
    actor = _require_reviewer(reviewer)
    if removal.state not in DECIDING_STATES:
        raise TransitionError(
            f"Case {removal.case} is {RemovalState(removal.state).label}; only requests in review can be claimed."
        )
    _check_appeal_reviewer(removal, reviewer)
    previous = removal.assigned_to_id
    if previous == reviewer.pk:
        return removal
    _swap(
        removal,
        RemovalRequest.objects.filter(pk=removal.pk, state=removal.state, assigned_to_id=previous),
        assigned_to=reviewer,
    )
    removal.assigned_to = reviewer
    reason = f"assigned to {actor.label}"
    if on_deciding:
        reason += ", automatically on deciding"
        if previous is not None:
            reason += " (taken over from another reviewer)"
    _log(removal, actor, RequestEvent.Action.CLAIM, reason)
    return removal


def claim_to_decide(removal: RemovalRequest, *, reviewer) -> None:
    """Deciding a case claims it first, as its own recorded event, if the reviewer had not."""
    if removal.state in DECIDING_STATES and removal.assigned_to_id != reviewer.pk:
        claim_removal(removal, reviewer=reviewer, on_deciding=True)


@transaction.atomic
def decide_item(item: RemovalItem, *, reviewer, decision: str) -> RemovalItem:
    """Record a reviewer's per-item call: block it, do not block it, or follow its verdict ("").

    Only items no decision has settled yet: a re-opened case's earlier items stay as decided."""
    actor = _require_reviewer(reviewer)
    decision = ItemDecision(decision)
    removal = item.removal
    if removal.state not in DECIDING_STATES:
        raise TransitionError(f"Case {removal.case} is not in review; its items cannot be decided now.")
    if item.decided_at is not None:
        raise TransitionError(f"Item {item.pk} was decided with the case already; that decision stays.")
    _swap(
        removal,
        RemovalItem.objects.filter(pk=item.pk, decision=item.decision, decided_at=None, removal__state=removal.state),
        decision=decision,
    )
    item.decision = decision
    _log(removal, actor, RequestEvent.Action.ITEM_DECISION, f"item {item.pk}: {decision.label}")
    return item


def blocked_by_default(item: RemovalItem) -> bool:
    """Whether approving blocks this item when no reviewer decided it (the rule of ``items_to_block``)."""
    return item.state in MATCH_STATES and not item.found_by_system


def items_to_block(removal: RemovalRequest):
    """Undecided items the requester named that match and nobody rejected, plus items a reviewer approved
    one by one.

    Items the system found (at verification or later, by monitoring) are blocked only when a reviewer ticks
    them: the requester never named them, so "approve" alone must not reach past what was asked for.
    """
    return removal.items.filter(decided_at=None).filter(
        Q(decision=ItemDecision.APPROVE) | Q(decision=ItemDecision.NONE, state__in=MATCH_STATES, found_by_system=False)
    )


def rejected_by(removal: RemovalRequest):
    """The id of the reviewer whose rejection was last recorded, or None."""
    return (
        removal.events.filter(action=RequestEvent.Action.TRANSITION, to_state=RemovalState.REJECTED)
        .order_by("-created_at", "-id")
        .values_list("actor_id", flat=True)
        .first()
    )


def _check_appeal_reviewer(removal: RemovalRequest, reviewer) -> None:
    if removal.state == RemovalState.APPEALED and rejected_by(removal) == reviewer.pk:
        raise TransitionError(f"You rejected {removal.case}; its appeal must be decided by another reviewer.")


@transaction.atomic
def approve_removal(removal: RemovalRequest, *, reviewer, note: str = "") -> RemovalRequest:
    """in_review or appealed -> approved: the items to block are put on the blocklist (published by the
    next release). Every undecided item is settled by this decision.

    Raises PermissionDenied without the review permission, TransitionError when
    the state does not allow it, another reviewer won, nothing would be blocked,
    or the reviewer would decide the appeal of their own rejection.
    """
    actor = _require_reviewer(reviewer)
    _check_appeal_reviewer(removal, reviewer)
    claim_to_decide(removal, reviewer=reviewer)
    items = list(items_to_block(removal))
    already_blocked = removal.items.filter(blocked=True).exists()
    if removal.state in DECIDING_STATES and not items and not already_blocked:
        raise TransitionError(
            f"Case {removal.case} has no matching item to block. Approve items one by one, or reject the request."
        )
    now = timezone.now()
    _transition(
        removal,
        RemovalState.APPROVED,
        actor=actor,
        reason=note or f"{len(items)} item(s) to block",
        now=now,
        decision_note=note,
        assigned_to=reviewer,
    )
    RemovalItem.objects.filter(pk__in=[item.pk for item in items]).update(blocked=True)
    removal.items.filter(decided_at=None).update(decided_at=now)
    for item in items:
        _hold(item)
    _notify_on_commit(removal, removal.contact_email)
    return removal


@transaction.atomic
def reject_removal(removal: RemovalRequest, *, reviewer, reason: str, note: str = "") -> RemovalRequest:
    """in_review or appealed -> rejected, with a reason code from RejectReason and optional free text.

    A re-opened case whose earlier links are blocked cannot be rejected as a whole (that would
    misstate what is blocked): its new items are marked "do not block" and the case approved.
    """
    actor = _require_reviewer(reviewer)
    _check_appeal_reviewer(removal, reviewer)
    email = removal.contact_email  # closing the case deletes it
    if reason not in RejectReason.values:
        raise TransitionError("Choose a reason for the rejection.")
    if reason == RejectReason.OTHER and not note.strip():
        raise TransitionError("Say why in the note when the reason is 'Other'.")
    if removal.items.filter(blocked=True).exists():
        raise TransitionError(
            f"Case {removal.case} already has blocked links. Mark the new items 'do not block' and approve instead."
        )
    claim_to_decide(removal, reviewer=reviewer)
    label = RejectReason(reason).label
    now = timezone.now()
    _transition(
        removal,
        RemovalState.REJECTED,
        actor=actor,
        reason=f"{label}. {note}".strip(),
        now=now,
        decision_reason=reason,
        decision_note=note,
        assigned_to=reviewer,
    )
    removal.items.filter(decided_at=None).update(decided_at=now)
    _notify_on_commit(removal, email)
    return removal


def _holder(item: RemovalItem) -> str:
    return f"removal-item:{item.pk}"


def _hold(item: RemovalItem) -> None:
    holds.hold(
        holder=_holder(item),
        url_sha256=item.url_sha256,
        image_sha256=item.image_sha256,
        phash=hashbits.phash_from_hex(item.image_phash) if item.image_phash else None,
        pdq=hashbits.pdq_from_hex(item.image_pdq) if item.image_pdq else None,
        pdq_quality=item.image_pdq_quality if item.image_pdq else None,
    )


def _release_holds(removal: RemovalRequest) -> None:
    blocked = list(removal.items.filter(blocked=True))
    if not blocked:
        return
    for item in blocked:
        holds.release_hold(holder=_holder(item))


def _notify_on_commit(removal: RemovalRequest, email: str) -> None:
    """Tell the requester, if they left an address, that their case moved. Never the secret."""
    if not email:
        return
    # No case reference in the subject: subjects show on lock screens and in notifications.
    subject = "News of your removal request"
    body = (
        f"Your removal request {removal.case} is now {RemovalState(removal.state).label}.\n"
        "Use your case reference and secret on the 'Follow a request' page for details."
    )
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))


def mark_published_for_holders(holders, *, release_version: int) -> int:
    """approved -> published for requests whose blocked items are all held in a published release."""
    item_ids = {int(h.split(":", 1)[1]) for h in holders if h.startswith("removal-item:")}
    candidates = RemovalRequest.objects.filter(state=RemovalState.APPROVED, items__pk__in=item_ids).distinct()
    moved = 0
    for removal in candidates:
        blocked = set(removal.items.filter(blocked=True).values_list("pk", flat=True))
        if not blocked <= item_ids:
            continue
        try:
            with transaction.atomic():
                _transition(
                    removal, RemovalState.PUBLISHED, actor=Actor(SYSTEM), reason=f"in release {release_version}"
                )
            moved += 1
        except TransitionError:
            continue  # withdrawn meanwhile
    return moved


# --- Requester acts -------------------------------------------------------------


@transaction.atomic
def withdraw_removal(removal: RemovalRequest, *, actor: Actor | None = None, reason: str = "") -> RemovalRequest:
    """Any state -> withdrawn. Deletes the contact e-mail and the reference signals, and lifts any block
    the request put in place (the next release carries tombstones). Raises TransitionError if already
    withdrawn."""
    _transition(removal, RemovalState.WITHDRAWN, actor=actor or Actor(REQUESTER), reason=reason)
    _release_holds(removal)
    from requests_app import monitoring  # imported here: monitoring builds on these services

    if removal.monitor_until is not None:
        monitoring.stop_monitoring(removal, actor=actor or Actor(REQUESTER), reason="monitoring ends with the case")
    monitoring.delete_references(removal)
    return removal


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
