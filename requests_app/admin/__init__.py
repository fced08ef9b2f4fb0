"""The reviewers' admin: the list of removal requests, the review page, and the event log.

Nothing here writes a field. Requests change only through the services
(``requests_app/services/``), called from the review page and the "Claim"
action; the admin's own forms are read-only: no add, no change, no delete
(requests and their events are audit material).
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from optout.admin import ReadOnlyAdmin
from requests_app import cases, services
from requests_app.admin.filters import QUEUES, AgeFilter, AssignedFilter, EvidenceFilter, QueueFilter, queue_counts
from requests_app.admin.review import ReviewPages
from requests_app.exceptions import TransitionError
from requests_app.models import ItemState, RemovalItem, RemovalRequest, RemovalState, RequestEvent


@admin.register(RemovalRequest)
class RemovalRequestAdmin(ReviewPages, ReadOnlyAdmin):
    list_display = ("case_link", "state", "dataset", "evidence", "item_count", "assigned_to", "received")
    list_display_links = None  # the case links to the review page instead of the (read-only) change form
    list_filter = (QueueFilter, "state", EvidenceFilter, "dataset", AgeFilter, AssignedFilter)
    list_select_related = ("dataset", "assigned_to")
    search_fields = ("case",)
    search_help_text = "A case reference, e.g. OPT-7KQ2-MX4P-9DZ3 (case, spaces and dashes do not matter)."
    list_per_page = 50
    # The total row count is a full scan on a large table; the filtered count is enough.
    show_full_result_count = False
    actions = ["claim"]
    # The contact e-mail and the secret's HMAC are left out on purpose: reviewers do not need them.
    fields = (
        "case",
        "review_link",
        "state",
        "dataset",
        "created_at",
        "state_changed_at",
        "assigned_to",
        "decision_reason",
        "decision_note",
        "check_attempts",
        "check_deadline",
    )
    readonly_fields = fields

    def has_view_permission(self, request, obj=None) -> bool:
        # Whoever may decide requests may see them.
        return super().has_view_permission(request, obj) or self.has_review_permission(request)

    def get_queryset(self, request):
        items = RemovalItem.objects.filter(removal=OuterRef("pk"))
        counted = items.order_by().values("removal").annotate(n=Count("pk")).values("n")
        return (
            super()
            .get_queryset(request)
            .annotate(
                item_count=Coalesce(Subquery(counted), 0),
                has_strong=Exists(items.filter(state=ItemState.MATCH_STRONG)),
                has_weak=Exists(items.filter(state=ItemState.MATCH_WEAK)),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        # A full case reference, however it was typed, is an exact (indexed) lookup.
        reference = cases.normalise_case_reference(search_term)
        if reference:
            return queryset.filter(case=reference), False
        return super().get_search_results(request, queryset, search_term)

    def get_ordering(self, request):
        # A queue is worked oldest first: by how long each case has waited in its state.
        if request.GET.get(QueueFilter.parameter_name) in QUEUES:
            return ["state_changed_at", "pk"]
        return super().get_ordering(request)

    def changelist_view(self, request, extra_context=None):
        counts = dict(RemovalRequest.objects.order_by().values_list("state").annotate(n=Count("pk")))
        changelist = reverse("admin:requests_app_removalrequest_changelist")
        waiting = queue_counts()
        queues = [
            {"label": label, "count": waiting[key], "url": f"{changelist}?queue={key}"}
            for key, (label, _condition) in QUEUES.items()
        ]
        extra_context = {**(extra_context or {}), "queues": queues}
        state_counts = [
            {
                "label": state.label,
                "count": counts.get(state.value, 0),
                "url": f"{changelist}?state__exact={state.value}",
            }
            for state in RemovalState
        ]
        return super().changelist_view(request, {**(extra_context or {}), "state_counts": state_counts})

    # --- Columns ------------------------------------------------------------------

    @admin.display(description="case", ordering="case")
    def case_link(self, removal: RemovalRequest) -> str:
        url = reverse("admin:requests_app_removalrequest_review", args=[removal.pk])
        return format_html('<a href="{}">{}</a>', url, removal.case)

    @admin.display(description="review")
    def review_link(self, removal: RemovalRequest) -> str:
        url = reverse("admin:requests_app_removalrequest_review", args=[removal.pk])
        return format_html('<a href="{}">Open the review page</a>', url)

    @admin.display(description="evidence")
    def evidence(self, removal: RemovalRequest) -> str:
        if getattr(removal, "has_strong", False):
            return "strong"
        if getattr(removal, "has_weak", False):
            return "weak"
        return "none"

    @admin.display(description="items", ordering="item_count")
    def item_count(self, removal: RemovalRequest) -> int:
        return removal.item_count

    @admin.display(description="received", ordering="created_at")
    def received(self, removal: RemovalRequest) -> str:
        return format_html(
            '{}<br><span class="review-quiet">{} ago</span>',
            f"{timezone.localtime(removal.created_at):%Y-%m-%d %H:%M}",
            timesince(removal.created_at, depth=1),
        )

    # --- Actions ------------------------------------------------------------------

    @admin.action(description="Claim the selected requests (assign them to me)", permissions=["review"])
    def claim(self, request, queryset):
        claimed = 0
        for removal in queryset:
            try:
                services.claim_removal(removal, reviewer=request.user)
            except (TransitionError, PermissionDenied) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                claimed += 1
        if claimed:
            self.message_user(request, f"You are now the reviewer of {claimed} request(s).", messages.SUCCESS)


@admin.register(RequestEvent)
class RequestEventAdmin(ReadOnlyAdmin):
    """The audit log across requests. Append-only: nothing here can change or delete an event."""

    list_display = ("created_at", "removal", "action", "from_state", "to_state", "actor_label", "reason")
    list_display_links = None
    list_filter = ("action", "to_state")
    list_select_related = ("removal",)
    search_fields = ("removal__case", "actor_label")
    show_full_result_count = False
    actions = None

    def get_search_results(self, request, queryset, search_term):
        reference = cases.normalise_case_reference(search_term)
        if reference:
            return queryset.filter(removal__case=reference), False
        return super().get_search_results(request, queryset, search_term)
