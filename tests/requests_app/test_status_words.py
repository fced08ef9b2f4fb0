"""The status page says, per link, what is true in the case's state: blocked, not blocked and why, or still checked."""

import pytest

from requests_app import services
from requests_app.models import RemovalItem, RemovalRequest
from tests.requests_app.builders import force_state, in_review, reviewer, submit


def status(client, removal, secret):
    response = client.post("/requests/status/", {"case": removal.case, "secret": secret})
    assert response.status_code == 200
    return response


def outcomes(response) -> list[tuple[str, str]]:
    return [(link.outcome, link.why) for link in response.context["links"]]


def secret_of(removal) -> str:
    from requests_app import cases

    secret = cases.new_secret()
    RemovalRequest.objects.filter(pk=removal.pk).update(secret_hmac=cases.secret_hmac(secret))
    return secret


@pytest.fixture
def rita(db):
    return reviewer()


@pytest.mark.django_db
def test_a_published_case_with_one_link_not_blocked_says_so(client, rita):
    removal = in_review(["match_strong", "no_match"])
    services.approve_removal(removal, reviewer=rita)
    force_state(removal, "published")
    response = status(client, removal, secret_of(removal))
    body = response.content.decode()
    assert "Published. 1 of your 2 links is on the blocklist" in body
    assert "The links are on the blocklist" not in body
    assert outcomes(response) == [
        ("blocked", "it is on the blocklist dataset builders use"),
        ("not_blocked", "the picture at this link does not look like your copy"),
    ]
    assert "A reviewer will look" not in body
    assert "distance" not in body.lower()


@pytest.mark.django_db
def test_an_approved_case_says_which_links_will_be_blocked(client, rita):
    removal = in_review(["match_strong", "match_weak", "unreachable"])
    item = removal.items.order_by("id")[1]
    services.decide_item(item, reviewer=rita, decision="reject")
    services.approve_removal(removal, reviewer=rita)
    response = status(client, removal, secret_of(removal))
    assert "Approved. 1 of your 3 links will be on the next blocklist" in response.content.decode()
    assert outcomes(response) == [
        ("will_be_blocked", "approved; it goes on the next blocklist we publish"),
        ("not_blocked", "a reviewer decided not to block this link"),
        ("not_blocked", "we could not reach this link"),
    ]


@pytest.mark.django_db
def test_while_checking_each_link_is_still_being_checked_or_waiting(client):
    removal, secret = submit(urls=["https://images.example.org/a.jpg", "https://images.example.org/b.jpg"])
    first = removal.items.order_by("id").first()
    RemovalItem.objects.filter(pk=first.pk).update(state="match_strong")
    force_state(removal, "checking")
    response = status(client, removal, secret)
    assert [outcome for outcome, _ in outcomes(response)] == ["waiting", "being_checked"]
    assert "Being checked" in response.content.decode()


@pytest.mark.django_db
def test_found_copies_are_promised_a_reviewer_only_while_one_has_to_decide(client, rita):
    removal = in_review(["match_strong"])
    from optout.models import Dataset, DatasetRow

    dataset = Dataset.objects.create(name="laion-mini", release="2022")
    row = DatasetRow.objects.create(dataset=dataset, url="https://cdn.example.org/x.jpg", url_sha256="f" * 64)
    services.add_found_item(removal, row, state="match_strong", image_sha256="e" * 64)
    secret = secret_of(removal)
    assert "A reviewer will look at it too" in status(client, removal, secret).content.decode()
    found = removal.items.get(found_by_system=True)
    services.decide_item(found, reviewer=rita, decision="approve")  # found copies are blocked only when ticked
    services.approve_removal(removal, reviewer=rita)
    body = status(client, removal, secret).content.decode()
    assert "A reviewer will look" not in body
    assert "1 other copy of your picture in the datasets; 1 of them will be on the next blocklist" in body
    services.withdraw_removal(RemovalRequest.objects.get(pk=removal.pk))
    body = status(client, removal, secret).content.decode()
    assert "A reviewer will look" not in body
    assert "Withdrawn" in body


@pytest.mark.django_db
def test_a_withdrawn_case_says_blocks_are_lifted(client, rita):
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=rita)
    services.withdraw_removal(RemovalRequest.objects.get(pk=removal.pk))
    response = status(client, removal, secret_of(removal))
    assert outcomes(response) == [
        ("unblocked", "you withdrew the request; the next blocklist release lifts the block"),
    ]


@pytest.mark.django_db
def test_a_rejected_case_gives_the_reason(client, rita):
    removal = in_review(["match_weak"])
    services.reject_removal(removal, reviewer=rita, reason="public_interest")
    response = status(client, removal, secret_of(removal))
    body = response.content.decode()
    assert "Not approved" in body
    assert "The picture is not private" in body
    assert outcomes(response) == [("not_blocked", "the request was not approved")]


@pytest.mark.django_db
def test_no_match_comes_with_next_steps_and_no_distances(client):
    removal = in_review(["no_match"])
    RemovalItem.objects.filter(removal=removal).update(phash_distance=23, pdq_distance=120)
    body = status(client, removal, secret_of(removal)).content.decode()
    assert 'id="no-match-help"' in body
    assert "Ask a reviewer anyway" in body
    assert "Add another copy" in body and "Add other links" in body
    assert "distance" not in body.lower() and "bits" not in body


@pytest.mark.django_db
def test_no_next_steps_when_every_link_matched(client):
    removal = in_review(["match_strong"])
    assert 'id="no-match-help"' not in status(client, removal, secret_of(removal)).content.decode()
