"""The reviewers' queues: what waits, since when, and the next case to take.

The admin index shows them first ("N waiting, oldest X ago"); the "next case" link after a decision
leads to the oldest case in review that nobody has claimed. A queue is a filter of the changelist,
so its link shows exactly the cases it counts.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Q
from django.urls import reverse

from requests_app.admin.filters import QUEUES
from requests_app.models import RemovalRequest, RemovalState


@dataclass(frozen=True)
class Queue:
    label: str
    waiting: int
    oldest: datetime | None  # when the oldest of them arrived
    url: str  # the changelist, filtered to this queue


def _changelist(query: str) -> str:
    return f"{reverse('admin:requests_app_removalrequest_changelist')}?{query}"


def queues(user) -> list[Queue]:
    """The queues a reviewer works from, in the order they are worked: unclaimed first."""
    in_review = Q(state=RemovalState.IN_REVIEW)
    spec = [
        (
            "Waiting for a reviewer (unclaimed)",
            in_review & Q(assigned_to__isnull=True),
            "state__exact=in_review&assigned=nobody",
        ),
        ("Claimed by you", in_review & Q(assigned_to=user), "state__exact=in_review&assigned=me"),
        (
            "Being checked",
            Q(state__in=[RemovalState.RECEIVED, RemovalState.CHECKING]),
            "state__in=received,checking",
        ),
        ("Approved, waiting for the next release", Q(state=RemovalState.APPROVED), "state__exact=approved"),
        # Kept apart (requests_app/admin/filters.py): decided cases back with new links or copies, and appeals.
        ("Re-opened: new links or copies found later", QUEUES["reopened"][1], "queue=reopened"),
        ("Appeals of a rejection", QUEUES["appeals"][1], "queue=appeals"),
    ]
    totals = RemovalRequest.objects.order_by().aggregate(
        **{f"n{i}": Count("pk", filter=where) for i, (_label, where, _query) in enumerate(spec)},
        **{f"t{i}": Min("created_at", filter=where) for i, (_label, where, _query) in enumerate(spec)},
    )
    return [
        Queue(label=label, waiting=totals[f"n{i}"], oldest=totals[f"t{i}"], url=_changelist(query))
        for i, (label, _where, query) in enumerate(spec)
    ]


def next_case(*, exclude: int | None = None) -> RemovalRequest | None:
    """The oldest case in review that nobody has claimed."""
    waiting = RemovalRequest.objects.filter(state=RemovalState.IN_REVIEW, assigned_to__isnull=True)
    if exclude is not None:
        waiting = waiting.exclude(pk=exclude)
    return waiting.order_by("created_at", "pk").first()
