"""After the first decision: links a requester adds, appeals, and reversing an approval.

Transition functions like those in ``services/`` (guard, compare-and-swap
through ``services.transition``, an appended event, side effects on commit).
Items a decision settled keep that decision (``RemovalItem.decided_at``): a case
that comes back to review is decided again on its new items only.
"""

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from optout.blocklist import holds
from optout.client.canonical import url_sha256
from requests_app import intake, monitoring, services
from requests_app.exceptions import TransitionError
from requests_app.models import (
    DECIDED_STATES,
    ENDED_STATES,
    ItemDecision,
    RemovalItem,
    RemovalRequest,
    RemovalState,
    RequestEvent,
)

# A case holds at most this many links the requester gave (at intake and added later); one addition
# takes at most intake.MAX_URLS, like one request.
MAX_LINKS_PER_CASE = 100
APPEAL_NOTE_MAX_LENGTH = 1000
PUBLISH_PERMISSION = "optout.publish_blocklist"


# --- Adding links ----------------------------------------------------------------------


@transaction.atomic
def add_links(
    removal: RemovalRequest, *, urls: Sequence[str], references: Sequence[Sequence[services.Reference]] = ()
) -> int:
    """Add the requester's links (and optionally more reference pictures) to a case; returns how many
    links are new. They are verified like the first ones: the case goes (back) to ``checking``.

    Raises TransitionError when the case has ended or is being appealed, when every link is in the case
    already, when the case would hold more than MAX_LINKS_PER_CASE links, or when the case no longer
    keeps any reference signals and none are given.
    """
    removal = RemovalRequest.objects.select_for_update().get(pk=removal.pk)
    if removal.state in ENDED_STATES or removal.state == RemovalState.APPEALED:
        raise TransitionError(f"Case {removal.case} is {RemovalState(removal.state).label}; links cannot be added now.")
    known = set(removal.items.values_list("url_sha256", flat=True))
    new: dict[str, str] = {}
    for url in urls:
        digest = url_sha256(url)
        if digest not in known:
            new.setdefault(digest, url)
    if not new:
        raise TransitionError("These links are part of your case already.")
    given = removal.items.filter(found_by_system=False).count()
    if given + len(new) > MAX_LINKS_PER_CASE:
        raise TransitionError(
            f"A case holds at most {MAX_LINKS_PER_CASE} links; this one has {given}. Send a new request for the rest."
        )
    images = removal.references.values("image_index").distinct().count()
    if not images and not references:
        raise TransitionError("This case no longer keeps the fingerprints of your picture: add your picture again.")
    if images + len(references) > intake.MAX_IMAGES:
        raise TransitionError(f"A case holds at most {intake.MAX_IMAGES} reference pictures.")
    now = timezone.now()
    RemovalItem.objects.bulk_create(
        RemovalItem(removal=removal, url=url, url_sha256=digest, added_at=now) for digest, url in new.items()
    )
    services.store_references(removal, references, first_index=_next_image_index(removal))
    RequestEvent.objects.create(
        removal=removal,
        actor_label=services.REQUESTER,
        from_state=removal.state,
        to_state=removal.state,
        action=RequestEvent.Action.ITEMS_ADDED,
        reason=f"{len(new)} link(s) added" + (f", {len(references)} reference picture(s)" if references else ""),
        created_at=now,
    )
    if removal.state in (RemovalState.IN_REVIEW, *DECIDED_STATES):
        fields = {"check_deadline": services.check_deadline(now), "check_attempts": removal.check_attempts + 1}
        if removal.state in DECIDED_STATES:
            fields["reopened_at"] = now
        services.transition(
            removal,
            RemovalState.CHECKING,
            actor=services.Actor(services.REQUESTER),
            reason="links added",
            now=now,
            **fields,
        )
    services.schedule_verification(removal)  # a received or checking case: the pending items are picked up
    return len(new)


def _next_image_index(removal: RemovalRequest) -> int:
    last = removal.references.order_by("-image_index").values_list("image_index", flat=True).first()
    return 0 if last is None else last + 1


# --- Appeals ---------------------------------------------------------------------------


def appeal_deadline(removal: RemovalRequest):
    """Until when a rejected case can be appealed: OPTOUT_APPEAL_WINDOW_DAYS after its rejection."""
    return removal.state_changed_at + timedelta(days=settings.OPTOUT_APPEAL_WINDOW_DAYS)


def can_appeal(removal: RemovalRequest, now=None) -> bool:
    now = now or timezone.now()
    return removal.state == RemovalState.REJECTED and removal.appealed_at is None and now <= appeal_deadline(removal)


@transaction.atomic
def appeal_removal(removal: RemovalRequest, *, note: str) -> RemovalRequest:
    """rejected -> appealed, once, within the window, with the requester's short note.

    The items the rejection settled are open again for the appeal's reviewer, who must not be the one
    who rejected (``services.check_appeal_reviewer``). Raises TransitionError otherwise.
    """
    note = note.strip()
    now = timezone.now()
    if removal.state != RemovalState.REJECTED:
        raise TransitionError(
            f"Case {removal.case} is {RemovalState(removal.state).label}; only a rejection can be appealed."
        )
    if removal.appealed_at is not None:
        raise TransitionError(f"Case {removal.case} was appealed already; the outcome of an appeal is final.")
    if now > appeal_deadline(removal):
        raise TransitionError(f"The time to appeal case {removal.case} ended on {appeal_deadline(removal):%d %B %Y}.")
    if not note:
        raise TransitionError("Say in a few words why the decision should be looked at again.")
    if len(note) > APPEAL_NOTE_MAX_LENGTH:
        raise TransitionError(f"Keep the note under {APPEAL_NOTE_MAX_LENGTH} characters.")
    services.transition(
        removal,
        RemovalState.APPEALED,
        actor=services.Actor(services.REQUESTER),
        reason="appeal",
        now=now,
        appealed_at=now,
        appeal_note=note,
        assigned_to=None,
    )
    removal.items.filter(blocked=False).exclude(decided_at=None).update(decided_at=None)
    return removal


# --- Reversing an approval ---------------------------------------------------------------


def _require_publisher(reviewer) -> services.Actor:
    if not (reviewer.has_perm(services.REVIEW_PERMISSION) and reviewer.has_perm(PUBLISH_PERMISSION)):
        raise PermissionDenied("Only reviewers who may publish the blocklist can reverse an approval.")
    return services.Actor.of(reviewer)


def _require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise TransitionError("Say why the approval is reversed.")
    return reason


@transaction.atomic
def reverse_removal(removal: RemovalRequest, *, reviewer, reason: str) -> RemovalRequest:
    """approved or published -> reversed: every hold of the case is released (the next release carries
    the tombstones). Needs the review and publish permissions and a reason. No event is deleted."""
    actor = _require_publisher(reviewer)
    reason = _require_reason(reason)
    email = removal.contact_email
    services.transition(removal, RemovalState.REVERSED, actor=actor, reason=reason)
    blocked = list(removal.items.filter(blocked=True))
    services.release_holds(removal)
    RemovalItem.objects.filter(pk__in=[item.pk for item in blocked]).update(blocked=False)
    _end_monitoring(removal, actor)
    services.notify_on_commit(removal, email)
    return removal


def _end_monitoring(removal: RemovalRequest, actor: services.Actor) -> None:
    if removal.monitor_until is not None:
        monitoring.stop_monitoring(removal, actor=actor, reason="monitoring ends with the reversal")


@transaction.atomic
def reverse_item(item: RemovalItem, *, reviewer, reason: str) -> RemovalItem:
    """Lift one blocked item (say, blocked by mistake): its hold is released and it is marked "do not
    block". A case left with nothing blocked after its approval is reversed as a whole."""
    actor = _require_publisher(reviewer)
    reason = _require_reason(reason)
    removal = RemovalRequest.objects.select_for_update().get(pk=item.removal_id)
    if removal.state in ENDED_STATES:
        raise TransitionError(f"Case {removal.case} is {RemovalState(removal.state).label}; nothing of it is blocked.")
    updated = RemovalItem.objects.filter(pk=item.pk, blocked=True).update(blocked=False, decision=ItemDecision.REJECT)
    if updated != 1:
        raise TransitionError(f"Item {item.pk} is not blocked (perhaps someone reversed it a moment ago).")
    holds.release_hold(holder=services.holder_of(item))
    item.blocked, item.decision = False, ItemDecision.REJECT
    services.log_action(removal, actor, RequestEvent.Action.ITEM_REVERSAL, f"item {item.pk}: {reason}")
    still_blocked = removal.items.filter(blocked=True).exists()
    if not still_blocked and removal.state in (RemovalState.APPROVED, RemovalState.PUBLISHED):
        services.transition(removal, RemovalState.REVERSED, actor=actor, reason=f"no item left blocked: {reason}")
        _end_monitoring(removal, actor)
    return item
