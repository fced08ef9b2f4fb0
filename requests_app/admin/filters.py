"""Changelist filters for removal requests: review queue, evidence strength, age and assigned reviewer."""

from datetime import timedelta

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from requests_app.models import ItemState, RemovalItem, RemovalRequest, RemovalState


def _has_items(*states: str) -> Exists:
    return Exists(RemovalItem.objects.filter(removal=OuterRef("pk"), state__in=states))


class EvidenceFilter(admin.SimpleListFilter):
    """The strongest verdict among a request's items."""

    title = "evidence strength"
    parameter_name = "evidence"

    def lookups(self, request, model_admin):
        return [("strong", "strong match"), ("weak", "weak match only"), ("none", "no match")]

    def queryset(self, request, queryset):
        strong = _has_items(ItemState.MATCH_STRONG)
        weak = _has_items(ItemState.MATCH_WEAK)
        if self.value() == "strong":
            return queryset.filter(strong)
        if self.value() == "weak":
            return queryset.filter(weak, ~strong)
        if self.value() == "none":
            return queryset.filter(~_has_items(ItemState.MATCH_STRONG, ItemState.MATCH_WEAK))
        return queryset


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    # (value, label, newer than, older than) in days
    BUCKETS = [
        ("1d", "less than a day", 1, None),
        ("7d", "1 to 7 days", 7, 1),
        ("30d", "7 to 30 days", 30, 7),
        ("old", "more than 30 days", None, 30),
    ]

    def lookups(self, request, model_admin):
        return [(value, label) for value, label, _newer, _older in self.BUCKETS]

    def queryset(self, request, queryset):
        now = timezone.now()
        for value, _label, newer, older in self.BUCKETS:
            if self.value() == value:
                if newer is not None:
                    queryset = queryset.filter(created_at__gte=now - timedelta(days=newer))
                if older is not None:
                    queryset = queryset.filter(created_at__lt=now - timedelta(days=older))
        return queryset


class AssignedFilter(admin.SimpleListFilter):
    title = "assigned reviewer"
    parameter_name = "assigned"

    def lookups(self, request, model_admin):
        assignees = (
            get_user_model()
            .objects.filter(pk__in=RemovalRequest.objects.filter(assigned_to__isnull=False).values("assigned_to"))
            .exclude(pk=request.user.pk)
            .order_by("username")
        )
        return [("me", "me"), ("nobody", "nobody")] + [(str(user.pk), user.get_username()) for user in assignees]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "me":
            return queryset.filter(assigned_to=request.user)
        if value == "nobody":
            return queryset.filter(assigned_to__isnull=True)
        if value and value.isdigit():
            return queryset.filter(assigned_to_id=int(value))
        return queryset


# The review queues, kept apart: a first review, a case re-opened by new links or copies, an appeal.
QUEUES = {
    "first": ("first review", Q(state=RemovalState.IN_REVIEW, reopened_at__isnull=True)),
    "reopened": ("re-opened", Q(state=RemovalState.IN_REVIEW, reopened_at__isnull=False)),
    "appeals": ("appeals", Q(state=RemovalState.APPEALED)),
}


def queue_counts() -> dict[str, int]:
    """How many cases wait in each queue, in one query."""
    return RemovalRequest.objects.order_by().aggregate(
        **{key: Count("pk", filter=condition) for key, (_label, condition) in QUEUES.items()}
    )


class QueueFilter(admin.SimpleListFilter):
    """One review queue; the changelist then lists it oldest first (RemovalRequestAdmin.get_ordering)."""

    title = "review queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _condition) in QUEUES.items()]

    def queryset(self, request, queryset):
        if self.value() in QUEUES:
            return queryset.filter(QUEUES[self.value()][1])
        return queryset
