"""``{% review_queues as queues %}``: the reviewers' queues for the admin index (requests_app/admin/queue.py)."""

from django import template

from requests_app.admin.queue import queues
from requests_app.services import REVIEW_PERMISSION

register = template.Library()


@register.simple_tag(takes_context=True)
def review_queues(context) -> list:
    user = context["request"].user
    if not (user.has_perm(REVIEW_PERMISSION) or user.has_perm("requests_app.view_removalrequest")):
        return []
    return queues(user)
