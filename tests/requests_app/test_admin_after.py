"""The reviewer's side after the first decision: queues apart, appeals, reversal, through the admin."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from optout.models import BlocklistHold
from requests_app import aftercare, services
from requests_app.models import RemovalRequest, RequestEvent
from tests.requests_app.builders import in_review, reviewer
from tests.users import staff

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/requests_app/removalrequest/"


def review_url(removal) -> str:
    return f"{CHANGELIST}{removal.pk}/review/"


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def login(client, user):
    client.force_login(user)
    return user


def aged(removal, days: int) -> RemovalRequest:
    RemovalRequest.objects.filter(pk=removal.pk).update(state_changed_at=timezone.now() - timedelta(days=days))
    return RemovalRequest.objects.get(pk=removal.pk)


def reopened(days: int) -> RemovalRequest:
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=reviewer(f"r{days}"))
    removal.refresh_from_db()
    services.transition(removal, "in_review", actor=services.Actor("system"), reopened_at=timezone.now())
    return aged(removal, days)


def appealed(by) -> RemovalRequest:
    removal = in_review(["match_weak"])
    services.reject_removal(removal, reviewer=by, reason="insufficient_evidence")
    return aftercare.appeal_removal(removal, note="It is my picture, mirrored.")


def test_queues_are_counted_apart_and_listed_oldest_first(client, django_assert_max_num_queries):
    login(client, staff("rhea", "review_removalrequest"))
    first = [aged(in_review(["match_strong"]), days) for days in (1, 5)]
    again = [reopened(days) for days in (2, 9, 4)]
    appeal = appealed(reviewer("rita"))

    response = client.get(CHANGELIST)
    assert [(q["label"], q["count"]) for q in response.context["queues"]] == [
        ("first review", 2),
        ("re-opened", 3),
        ("appeals", 1),
    ]
    with django_assert_max_num_queries(13):
        listed = client.get(CHANGELIST, {"queue": "reopened"})
    assert [r.pk for r in listed.context["cl"].result_list] == [again[1].pk, again[2].pk, again[0].pk]
    assert [r.pk for r in client.get(CHANGELIST, {"queue": "first"}).context["cl"].result_list] == [
        first[1].pk,
        first[0].pk,
    ]
    assert [r.pk for r in client.get(CHANGELIST, {"queue": "appeals"}).context["cl"].result_list] == [appeal.pk]


def test_the_changelist_query_count_stays_bounded_with_many_reopened_cases(client, django_assert_max_num_queries):
    login(client, staff("rhea", "review_removalrequest"))
    for days in range(25):
        reopened(days)
    with django_assert_max_num_queries(13):
        response = client.get(CHANGELIST, {"queue": "reopened"})
    assert len(response.context["cl"].result_list) == 25


def test_the_reviewer_who_rejected_sees_the_appeal_but_no_decision_forms(client):
    rita = reviewer("rita")
    removal = appealed(rita)
    login(client, rita)
    page = client.get(review_url(removal)).content.decode()
    assert "It is my picture, mirrored." in page
    assert "its appeal goes to another reviewer" in page
    assert 'value="approve"' not in page
    posted = client.post(review_url(removal), {"action": "approve", "note": ""})
    assert "another reviewer" in " ".join(messages_of(posted))
    assert RemovalRequest.objects.get(pk=removal.pk).state == "appealed"


def test_another_reviewer_decides_the_appeal_from_the_review_page(client):
    removal = appealed(reviewer("rita"))
    login(client, reviewer("otto"))
    page = client.get(review_url(removal)).content.decode()
    assert 'value="approve"' in page
    client.post(review_url(removal), {"action": "approve", "note": "On appeal: the crop matches."})
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert stored.state == "approved"
    assert stored.items.filter(blocked=True).count() == 1


def test_a_publisher_reverses_a_case_from_the_review_page(client):
    removal = in_review(["match_strong", "match_strong"])
    services.approve_removal(removal, reviewer=reviewer("rita"))
    login(client, staff("pia", "review_removalrequest", "publish_blocklist"))
    assert "Reverse the approval" in client.get(review_url(removal)).content.decode()

    refused = client.post(review_url(removal), {"action": "reverse", "reason": ""})
    assert "Say why" in " ".join(messages_of(refused))
    client.post(review_url(removal), {"action": "reverse", "reason": "A public artwork, blocked by mistake."})

    assert RemovalRequest.objects.get(pk=removal.pk).state == "reversed"
    assert not BlocklistHold.objects.exists()
    event = RequestEvent.objects.filter(removal=removal).latest("id")
    assert (event.to_state, event.reason) == ("reversed", "A public artwork, blocked by mistake.")


def test_a_publisher_reverses_one_item(client):
    removal = in_review(["match_strong", "match_strong"])
    services.approve_removal(removal, reviewer=reviewer("rita"))
    mistaken, kept = removal.items.order_by("id")
    login(client, staff("pia", "review_removalrequest", "publish_blocklist"))
    client.post(review_url(removal), {"action": "reverse_item", "item": mistaken.pk, "reason": "Not her picture."})
    assert list(RemovalRequest.objects.get(pk=removal.pk).items.filter(blocked=True)) == [kept]
    assert list(BlocklistHold.objects.values_list("holder", flat=True)) == [f"removal-item:{kept.pk}"]


def test_a_reviewer_without_the_publish_permission_cannot_reverse(client):
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=reviewer("rita"))
    login(client, staff("rhea", "review_removalrequest"))
    assert "Reverse the approval" not in client.get(review_url(removal)).content.decode()
    response = client.post(review_url(removal), {"action": "reverse", "reason": "Mistake."})
    assert response.status_code == 403
    assert RemovalRequest.objects.get(pk=removal.pk).state == "approved"
