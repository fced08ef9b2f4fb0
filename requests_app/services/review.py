"""Review: claiming a case, per-item calls, approval and rejection, the holds they put on the
blocklist, and the move to published once a release carries them."""

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from optout.blocklist import holds
from optout.imaging import hashbits
from requests_app.exceptions import TransitionError
from requests_app.models import (
    ItemDecision,
    ItemState,
    RejectReason,
    RemovalItem,
    RemovalRequest,
    RemovalState,
    RequestEvent,
)
from requests_app.services.transitions import SYSTEM, Actor, log_action, notify_on_commit, swap, transition

REVIEW_PERMISSION = "requests_app.review_removalrequest"
MATCH_STATES = (ItemState.MATCH_STRONG, ItemState.MATCH_WEAK)
# States in which a reviewer decides: a case's first review (or a re-opened one), and an appeal.
DECIDING_STATES = (RemovalState.IN_REVIEW, RemovalState.APPEALED)


def _require_reviewer(reviewer) -> Actor:
    if not reviewer.has_perm(REVIEW_PERMISSION):
        raise PermissionDenied("Only reviewers can decide removal requests.")
    return Actor.of(reviewer)


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
    check_appeal_reviewer(removal, reviewer)
    previous = removal.assigned_to_id
    if previous == reviewer.pk:
        return removal
    swap(
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
    log_action(removal, actor, RequestEvent.Action.CLAIM, reason)
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
    swap(
        removal,
        RemovalItem.objects.filter(pk=item.pk, decision=item.decision, decided_at=None, removal__state=removal.state),
        decision=decision,
    )
    item.decision = decision
    log_action(removal, actor, RequestEvent.Action.ITEM_DECISION, f"item {item.pk}: {decision.label}")
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


def check_appeal_reviewer(removal: RemovalRequest, reviewer) -> None:
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
    check_appeal_reviewer(removal, reviewer)
    claim_to_decide(removal, reviewer=reviewer)
    items = list(items_to_block(removal))
    already_blocked = removal.items.filter(blocked=True).exists()
    if removal.state in DECIDING_STATES and not items and not already_blocked:
        raise TransitionError(
            f"Case {removal.case} has no matching item to block. Approve items one by one, or reject the request."
        )
    now = timezone.now()
    transition(
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
    notify_on_commit(removal, removal.contact_email)
    return removal


@transaction.atomic
def reject_removal(removal: RemovalRequest, *, reviewer, reason: str, note: str = "") -> RemovalRequest:
    """in_review or appealed -> rejected, with a reason code from RejectReason and optional free text.

    A re-opened case whose earlier links are blocked cannot be rejected as a whole (that would
    misstate what is blocked): its new items are marked "do not block" and the case approved.
    """
    actor = _require_reviewer(reviewer)
    check_appeal_reviewer(removal, reviewer)
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
    transition(
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
    notify_on_commit(removal, email)
    return removal


def holder_of(item: RemovalItem) -> str:
    return f"removal-item:{item.pk}"


def _hold(item: RemovalItem) -> None:
    holds.hold(
        holder=holder_of(item),
        url_sha256=item.url_sha256,
        image_sha256=item.image_sha256,
        phash=hashbits.phash_from_hex(item.image_phash) if item.image_phash else None,
        pdq=hashbits.pdq_from_hex(item.image_pdq) if item.image_pdq else None,
        pdq_quality=item.image_pdq_quality if item.image_pdq else None,
    )


def release_holds(removal: RemovalRequest) -> None:
    blocked = list(removal.items.filter(blocked=True))
    if not blocked:
        return
    for item in blocked:
        holds.release_hold(holder=holder_of(item))


def mark_published(*, release_version: int, newest_hold: int) -> int:
    """approved -> published for requests whose blocked items are all held in a published release (the release
    whose newest hold was ``newest_hold``: see ``optout.blocklist.events``). Approved requests wait for the next
    release, so there are few of them."""
    moved = 0
    for removal in RemovalRequest.objects.filter(state=RemovalState.APPROVED):
        holders = {holder_of(item) for item in removal.items.filter(blocked=True)}
        if not holders or holds.held_in(holders, newest=newest_hold) != holders:
            continue
        try:
            with transaction.atomic():
                transition(removal, RemovalState.PUBLISHED, actor=Actor(SYSTEM), reason=f"in release {release_version}")
            moved += 1
        except TransitionError:
            continue  # withdrawn meanwhile
    return moved
