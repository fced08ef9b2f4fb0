"""The review page says in words which variants of the two pictures matched; distances stay the reviewer's."""

import pytest

from requests_app.models import RemovalItem
from tests.requests_app.builders import force_state, in_review, reviewer, submit
from tests.requests_app.test_admin import review_url


@pytest.mark.django_db
def test_the_review_page_says_which_variant_matched(client):
    removal = in_review(["match_weak", "match_strong", "no_match"])
    first, second, third = removal.items.order_by("id")
    RemovalItem.objects.filter(pk=first.pk).update(reference_variant="mirrored", phash_distance=3, pdq_distance=40)
    RemovalItem.objects.filter(pk=second.pk).update(reference_variant="crop80-25-75", candidate_variant="trimmed")
    RemovalItem.objects.filter(pk=third.pk).update(reference_variant="turned-left")
    client.force_login(reviewer())

    body = client.get(review_url(removal)).content.decode()

    assert "Matches your picture mirrored (left and right swapped)." in body
    assert "Matches a crop of your picture (about 80% of each side); in the link&#x27;s picture with its frame" in body
    assert "turned a quarter to the left" not in body  # no match: nothing matched, so nothing to say
    assert "up to 50 is a near miss" in body


@pytest.mark.django_db
def test_the_requester_never_sees_which_variant_or_how_far(client):
    removal, secret = submit()
    force_state(removal, "in_review")
    RemovalItem.objects.filter(removal=removal).update(
        state="match_weak", reference_variant="mirrored", phash_distance=7, pdq_distance=44
    )

    response = client.post(
        "/api/v1/requests/status/", {"case": removal.case, "secret": secret}, content_type="application/json"
    )

    assert response.status_code == 200
    assert response.json()["items"] == [{"state": "match_weak"}]
    assert b"mirrored" not in response.content and b"distance" not in response.content
