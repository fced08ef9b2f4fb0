"""The reviewer's page for one removal request, and the preview of each item's picture.

Both are extra admin URLs of ``RemovalRequestAdmin`` (``get_urls`` +
``admin_site.admin_view``). Seeing the page needs the view permission; acting
on it and seeing the pictures' URLs and previews need the review permission.
Every act calls the same service as everything else, so the services' own
permission check and compare-and-swap apply; a refused act comes back as an
admin message, after a redirect (post/redirect/get).
"""

from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from optout import imaging
from requests_app import aftercare, services
from requests_app.admin import queue
from requests_app.admin.evidence import closest_strong_match, evidence_words
from requests_app.exceptions import TransitionError
from requests_app.models import (
    ENDED_STATES,
    ItemDecision,
    ItemState,
    RejectReason,
    RemovalItem,
    RemovalRequest,
    RemovalState,
)
from requests_app.preview import PreviewUnavailable, preview_of_url

REVIEW_TEMPLATE = "admin/requests_app/removalrequest/review.html"


class ApproveForm(forms.Form):
    """The note, and one decision per item: deciding the items is part of approving, so nothing is
    lost for want of a per-item Save. The item fields live beside their items on the page and join
    this form through their ``form`` attribute."""

    note = forms.CharField(
        required=False,
        max_length=2000,
        label="Note (optional)",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )

    def __init__(self, *args, items=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.items = list(items)
        for item in self.items:
            self.fields[self.item_field(item)] = forms.ChoiceField(
                choices=ItemDecision.choices,
                required=False,
                initial=item.decision,
                label="Decision",
                widget=forms.Select(
                    attrs={
                        "form": "approve-form",
                        "class": "review-item-decision",
                        # Whether "follow the verdict" blocks it: the page's script counts from this.
                        "data-matches": "1" if services.blocked_by_default(item) else "0",
                    }
                ),
            )

    @staticmethod
    def item_field(item: RemovalItem) -> str:
        return f"item_{item.pk}"

    def decisions(self) -> dict[int, str]:
        """The items whose decision changed, with the new one."""
        return {
            item.pk: self.cleaned_data[self.item_field(item)]
            for item in self.items
            if self.cleaned_data.get(self.item_field(item), item.decision) != item.decision
        }


class RejectForm(forms.Form):
    reason = forms.ChoiceField(
        choices=[("", "Choose a reason…"), *RejectReason.choices],
        error_messages={"required": "Choose a reason for the rejection."},
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        label="Note (required for 'Other')",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )


class ReverseForm(forms.Form):
    item = forms.IntegerField(required=False, widget=forms.HiddenInput)  # empty: the whole case
    reason = forms.CharField(
        max_length=2000,
        label="Why is the approval reversed?",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        error_messages={"required": "Say why the approval is reversed."},
    )


# Verdicts after which there is nothing to preview: verification got no image at this address.
NO_IMAGE_STATES = frozenset({ItemState.UNREACHABLE, ItemState.NOT_AN_IMAGE, ItemState.REFUSED})


@dataclass
class ItemRow:
    number: int
    item: RemovalItem
    will_block: bool
    preview_url: str  # empty: no preview
    evidence: str  # in words (requests_app/admin/evidence.py)
    decision_field: forms.BoundField | None
    compare_with: "ItemRow | None" = None  # for a no-match item: the closest strong match of the case
    compare_bits: int | None = None
    matched_as: str = ""  # in words, which variants of the two pictures matched (optout.imaging.describe)


def _form_error(form: forms.Form) -> str:
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


class ReviewPages:
    """Mixed into ``RemovalRequestAdmin``: the review page and the item previews."""

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm(services.REVIEW_PERMISSION)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<int:object_id>/review/", self.admin_site.admin_view(self.review_view), name=f"{name}_review"),
            path("next/", self.admin_site.admin_view(self.next_view), name=f"{name}_next"),
            path(
                "<int:object_id>/items/<int:item_id>/preview.jpg",
                self.admin_site.admin_view(self.preview_view),
                name=f"{name}_preview",
            ),
            *super().get_urls(),
        ]

    # --- The page ---------------------------------------------------------------

    def review_view(self, request, object_id: int):
        removal = RemovalRequest.objects.select_related("dataset", "assigned_to").filter(pk=object_id).first()
        if removal is None:
            raise Http404("No such removal request.")
        if not self.has_view_permission(request, removal):
            raise PermissionDenied
        if request.method == "POST":
            return self._act(request, removal)
        return TemplateResponse(request, REVIEW_TEMPLATE, self._review_context(request, removal))

    def _review_context(self, request, removal: RemovalRequest) -> dict:
        can_review = self.has_review_permission(request)
        in_review = removal.state in services.DECIDING_STATES
        to_block = set(services.items_to_block(removal).values_list("pk", flat=True))
        items = list(removal.items.select_related("dataset_row__dataset"))
        # Items an earlier decision settled keep it: only the others are decided now.
        approve_form = ApproveForm(items=[item for item in items if item.decided_at is None], auto_id="id_%s")
        rows = [
            ItemRow(
                number=number,
                item=item,
                will_block=item.pk in to_block,
                preview_url=""
                if item.state in NO_IMAGE_STATES
                else reverse("admin:requests_app_removalrequest_preview", args=[removal.pk, item.pk]),
                evidence=evidence_words(item),
                decision_field=approve_form[ApproveForm.item_field(item)]
                if can_review and in_review and item.decided_at is None
                else None,
                matched_as=imaging.describe(item.reference_variant, item.candidate_variant)
                if item.state in services.MATCH_STATES
                else "",
            )
            for number, item in enumerate(items, start=1)
        ]
        by_pk = {row.item.pk: row for row in rows}
        for row in rows:
            comparison = closest_strong_match(row.item, items)
            if comparison is not None:
                row.compare_with, row.compare_bits = by_pk[comparison.item.pk], comparison.bits_apart
        references = list(removal.references.values_list("image_index", "source"))
        upcoming = queue.next_case(exclude=removal.pk)
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Review {removal.case}",
            "removal": removal,
            "rows": rows,
            "events": removal.events.all(),
            "reference_images": len({index for index, _source in references}),
            "reference_sources": sorted({source for _index, source in references}),
            "inconsistent_items": sum(row.item.hashes_inconsistent for row in rows),
            "can_review": can_review,
            "in_review": in_review,
            **self._after_context(request, removal),
            "assigned_to_me": removal.assigned_to_id == request.user.pk,
            "to_block_count": len(to_block),
            "approve_form": approve_form,
            "reject_form": RejectForm(),
            "phash_threshold": settings.OPTOUT_PHASH_THRESHOLD,
            "pdq_threshold": settings.OPTOUT_PDQ_THRESHOLD,
            "pdq_review_threshold": settings.OPTOUT_PDQ_REVIEW_THRESHOLD,
            "change_url": reverse("admin:requests_app_removalrequest_change", args=[removal.pk]),
            "changelist_url": reverse("admin:requests_app_removalrequest_changelist"),
            "next_url": reverse("admin:requests_app_removalrequest_review", args=[upcoming.pk]) if upcoming else "",
        }

    def _after_context(self, request, removal: RemovalRequest) -> dict:
        """Appeals, re-opened cases and reversal (requests_app/aftercare.py)."""
        rejecter = services.rejected_by(removal) if removal.state == RemovalState.APPEALED else None
        can_reverse = (
            request.user.has_perm(aftercare.PUBLISH_PERMISSION)
            and self.has_review_permission(request)
            and removal.state not in ENDED_STATES
            and removal.items.filter(blocked=True).exists()
        )
        return {
            "own_rejection": rejecter is not None and rejecter == request.user.pk,
            "already_blocked": removal.items.filter(blocked=True).count(),
            "can_reverse": can_reverse,
            "reverse_form": ReverseForm(),
        }

    # --- Acts -------------------------------------------------------------------

    def _act(self, request, removal: RemovalRequest):
        # The services check the permission too; refusing here first means a
        # non-reviewer gets the same 403 whatever the form holds.
        if not self.has_review_permission(request):
            raise PermissionDenied("Only reviewers can decide removal requests.")
        acts = {
            "claim": self._claim,
            "approve": self._approve,
            "reject": self._reject,
            "reverse": self._reverse,
            "reverse_item": self._reverse_item,
        }
        act = acts.get(request.POST.get("action", ""))
        if act is None:
            messages.error(request, "Unknown action.")
        else:
            try:
                done = act(request, removal)
            except TransitionError as exc:
                messages.error(request, str(exc))
            else:
                if done:
                    messages.success(request, done)
        return HttpResponseRedirect(reverse("admin:requests_app_removalrequest_review", args=[removal.pk]))

    def _claim(self, request, removal: RemovalRequest) -> str:
        services.claim_removal(removal, reviewer=request.user)
        return f"You are now the reviewer of {removal.case}."

    def _approve(self, request, removal: RemovalRequest) -> str:
        form = ApproveForm(request.POST, items=removal.items.filter(decided_at=None))
        if not form.is_valid():
            raise TransitionError(_form_error(form))
        # One act: the claim, the item decisions and the approval stand or fall together.
        with transaction.atomic():
            services.claim_to_decide(removal, reviewer=request.user)
            items = {item.pk: item for item in form.items}
            for pk, decision in form.decisions().items():
                services.decide_item(items[pk], reviewer=request.user, decision=decision)
            services.approve_removal(removal, reviewer=request.user, note=form.cleaned_data["note"])
        blocked = removal.items.filter(blocked=True).count()
        return f"{removal.case} is approved: {blocked} item(s) go on the blocklist with the next release."

    def _reject(self, request, removal: RemovalRequest) -> str:
        form = RejectForm(request.POST)
        if not form.is_valid():
            raise TransitionError(_form_error(form))
        services.reject_removal(
            removal, reviewer=request.user, reason=form.cleaned_data["reason"], note=form.cleaned_data["note"]
        )
        return f"{removal.case} is rejected."

    def next_view(self, request):
        """The oldest case in review nobody has claimed, or the list when none waits."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        upcoming = queue.next_case()
        if upcoming is None:
            messages.info(request, "No case is waiting for a reviewer.")
            return HttpResponseRedirect(reverse("admin:requests_app_removalrequest_changelist"))
        return HttpResponseRedirect(reverse("admin:requests_app_removalrequest_review", args=[upcoming.pk]))

    def _reverse(self, request, removal: RemovalRequest) -> str:
        form = ReverseForm(request.POST)
        if not form.is_valid():
            raise TransitionError(_form_error(form))
        item_id = form.cleaned_data.get("item")
        if item_id is None:
            aftercare.reverse_removal(removal, reviewer=request.user, reason=form.cleaned_data["reason"])
            return f"{removal.case} is reversed: its links come off the blocklist with the next release."
        item = removal.items.filter(pk=item_id).first()
        if item is None:
            raise TransitionError("That item is not part of this request.")
        aftercare.reverse_item(item, reviewer=request.user, reason=form.cleaned_data["reason"])
        return f"Item {item.pk} is no longer blocked; the next release carries its tombstone."

    _reverse_item = _reverse

    # --- The preview ------------------------------------------------------------

    def preview_view(self, request, object_id: int, item_id: int):
        """The picture at the item's URL as a small JPEG, fetched now by the server; reviewers only."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if not self.has_review_permission(request):
            raise PermissionDenied
        item = RemovalItem.objects.filter(pk=item_id, removal_id=object_id).only("pk", "url").first()
        if item is None:
            raise Http404("No such item.")
        try:
            response = HttpResponse(preview_of_url(item.url), content_type="image/jpeg")
            response["Content-Disposition"] = 'inline; filename="preview.jpg"'
        except PreviewUnavailable as exc:
            response = HttpResponse(f"No preview: {exc}", status=502, content_type="text/plain; charset=utf-8")
        # A private picture: never cached by the browser or anything in between,
        # never sniffed as something else, never able to run anything if opened on its own.
        response["Cache-Control"] = "no-store, private"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cross-Origin-Resource-Policy"] = "same-origin"
        return response
