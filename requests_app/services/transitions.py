"""The one way a removal request changes state, shared by every service module.

``transition`` checks the current state against ALLOWED_TRANSITIONS, updates with a
compare-and-swap (``filter(pk=..., state=old).update(...)``) so that of two concurrent
actors exactly one wins, and appends a RequestEvent. Side effects wait for the commit.
"""

from dataclasses import dataclass
from datetime import datetime

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from requests_app.exceptions import TransitionError
from requests_app.models import ALLOWED_TRANSITIONS, CLOSED_STATES, RemovalRequest, RemovalState, RequestEvent

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


def swap(removal: RemovalRequest, still_unchanged, **fields) -> None:
    """Compare and swap: update the one row ``still_unchanged`` matches if nobody changed it since we read
    it, else raise ``TransitionError`` (of two concurrent reviewers, exactly one wins)."""
    if still_unchanged.update(**fields) != 1:
        raise TransitionError(
            f"Case {removal.case} was changed by someone else a moment ago. Reload it to see its current state."
        )


def transition(
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
    swap(removal, RemovalRequest.objects.filter(pk=removal.pk, state=current), state=to, state_changed_at=now, **fields)
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


def log_action(removal: RemovalRequest, actor: Actor, action: str, reason: str, *, now: datetime | None = None) -> None:
    """Record an act that changes no state (a claim, a per-item call, monitoring) on the case's event log."""
    RequestEvent.objects.create(
        removal=removal,
        actor=actor.user,
        actor_label=actor.label,
        from_state=removal.state,
        to_state=removal.state,
        action=action,
        reason=reason,
        created_at=now or timezone.now(),
    )


def notify_on_commit(removal: RemovalRequest, email: str) -> None:
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
