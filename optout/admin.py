"""Admin for the blocklist side: feed consumers (tokens shown once), and read-only entries,
releases and the partner access log. Entries change only through ``optout.blocklist``."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from optout.blocklist import releases
from optout.feed import consumers
from optout.models import BlocklistEntry, BlocklistHold, FeedAccess, FeedConsumer, Release

PUBLISH_PERMISSION = "optout.publish_blocklist"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records nobody edits by hand (releases, access logs, request events): view only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _show_token(modeladmin, request, consumer: FeedConsumer, token: str) -> TemplateResponse:
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": f"Token for {consumer.name}",
        "consumer": consumer,
        "token": token,
    }
    response = TemplateResponse(request, "optout/admin/consumer_token.html", context)
    response["Cache-Control"] = "no-store"  # the only time the token exists outside the consumer's hands
    return response


@admin.register(FeedConsumer)
class FeedConsumerAdmin(admin.ModelAdmin):
    list_display = ["name", "contact", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "contact"]
    fields = ["name", "contact", "active"]
    actions = ["issue_new_token"]

    def save_model(self, request, obj, form, change):
        if not change:
            token, obj.token_hmac = consumers.new_token()
            request._optout_new_token = token
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        token = getattr(request, "_optout_new_token", None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        return _show_token(self, request, obj, token)

    @admin.action(description="Issue a new token (the old one stops working)", permissions=["change"])
    def issue_new_token(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one consumer: each token is shown once.", messages.ERROR)
            return None
        consumer = queryset.get()
        return _show_token(self, request, consumer, consumers.issue_token(consumer))


@admin.register(FeedAccess)
class FeedAccessAdmin(ReadOnlyAdmin):
    list_display = ["at", "consumer", "path", "status"]
    list_filter = ["status", "consumer"]
    list_select_related = ["consumer"]
    date_hierarchy = "at"


class HoldInline(admin.TabularInline):
    model = BlocklistHold
    fields = ["holder", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(BlocklistEntry)
class BlocklistEntryAdmin(ReadOnlyAdmin):
    list_display = ["url_sha256", "sha256", "blocked", "published", "dirty", "changed_at"]
    list_filter = ["blocked", "published", "dirty"]
    search_fields = ["=url_sha256", "=sha256"]
    inlines = [HoldInline]


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    change_list_template = "admin/optout/release/change_list.html"
    list_display = ["version", "created_at", "expires_at", "entries", "added", "removed", "key_id"]

    def get_urls(self):
        publish = path("publish/", self.admin_site.admin_view(self.publish_view), name="optout_release_publish")
        return [publish, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_publish": request.user.has_perm(PUBLISH_PERMISSION)}
        return super().changelist_view(request, extra_context)

    def publish_view(self, request):
        """Publish a release now (publishers only); the schedule does the same every interval."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(PUBLISH_PERMISSION):
            raise PermissionDenied("Only publishers can publish releases.")
        try:
            release = releases.publish_release()
        except releases.PublishError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"Published release {release.version}: {release.entries} entries (+{release.added} -{release.removed}).",
            )
        return redirect("admin:optout_release_changelist")

    exclude = ["tiers"]
    readonly_fields = ["previous"]
