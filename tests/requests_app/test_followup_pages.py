"""The requester's pages and API after the first decision: add links, appeal, keep watching."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from optout import imaging
from requests_app import aftercare, services
from requests_app.models import RemovalRequest
from tests.images import photo_jpeg
from tests.requests_app.builders import in_review, reviewer, submit

pytestmark = pytest.mark.django_db


def with_secret(removal: RemovalRequest) -> tuple[RemovalRequest, str]:
    """Give a built case a known secret (builders make cases whose secret the test did not keep)."""
    from requests_app import cases

    secret = cases.new_secret()
    RemovalRequest.objects.filter(pk=removal.pk).update(secret_hmac=cases.secret_hmac(secret))
    return RemovalRequest.objects.get(pk=removal.pk), secret


def rejected_case() -> tuple[RemovalRequest, str]:
    removal = in_review(["match_weak"])
    services.reject_removal(removal, reviewer=reviewer(), reason="insufficient_evidence")
    return with_secret(removal)


def published_case() -> tuple[RemovalRequest, str]:
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=reviewer())
    removal.refresh_from_db()
    services.transition(removal, "published", actor=services.Actor("system"))
    return with_secret(removal)


# --- The status page ----------------------------------------------------------------------


def test_a_rejected_case_offers_an_appeal_with_its_deadline(client):
    removal, secret = rejected_case()
    body = client.post("/requests/status/", {"case": removal.case, "secret": secret}).content.decode()
    assert "Ask for another look" in body
    assert f"{aftercare.appeal_deadline(removal):%-d %B %Y}" in body

    sent = client.post("/requests/appeal/", {"case": removal.case, "secret": secret, "note": "It is me, cropped."})

    assert sent.status_code == 200
    assert "Your appeal is sent" in sent.content.decode()
    assert 'data-state="appealed"' in sent.content.decode()
    assert RemovalRequest.objects.get(pk=removal.pk).appeal_note == "It is me, cropped."


def test_an_appeal_with_a_wrong_secret_changes_nothing(client):
    removal, _secret = rejected_case()
    response = client.post("/requests/appeal/", {"case": removal.case, "secret": "wrong", "note": "Please."})
    assert response.status_code == 404
    assert RemovalRequest.objects.get(pk=removal.pk).state == "rejected"


def test_an_appeal_after_the_window_is_refused_in_words(client, settings):
    settings.OPTOUT_APPEAL_WINDOW_DAYS = 3
    removal, secret = rejected_case()
    RemovalRequest.objects.filter(pk=removal.pk).update(state_changed_at=timezone.now() - timedelta(days=4))
    page = client.post("/requests/status/", {"case": removal.case, "secret": secret}).content.decode()
    assert "Ask for another look" not in page
    response = client.post("/requests/appeal/", {"case": removal.case, "secret": secret, "note": "Please."})
    assert response.status_code == 400
    assert "time to appeal" in response.content.decode()
    assert RemovalRequest.objects.get(pk=removal.pk).state == "rejected"


def test_an_appeal_without_a_note_is_sent_back(client):
    removal, secret = rejected_case()
    response = client.post("/requests/appeal/", {"case": removal.case, "secret": secret, "note": ""})
    assert response.status_code == 400
    assert "why the decision should be looked at again" in response.content.decode()


def test_links_added_to_a_published_case_go_to_checking(client, django_capture_on_commit_callbacks):
    removal, secret = published_case()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            "/requests/links/",
            {"case": removal.case, "secret": secret, "urls": "https://images.example.org/elsewhere.jpg"},
        )
    assert response.status_code == 200
    body = response.content.decode()
    assert "1 link added" in body
    assert 'data-state="checking"' in body
    assert "elsewhere" not in body  # the page never echoes URLs it was not asked to show
    assert len(callbacks) == 1
    assert RemovalRequest.objects.get(pk=removal.pk).items.count() == 2


def test_added_links_with_a_wrong_secret_change_nothing(client):
    removal, _secret = published_case()
    response = client.post(
        "/requests/links/", {"case": removal.case, "secret": "wrong", "urls": "https://images.example.org/x.jpg"}
    )
    assert response.status_code == 404
    assert removal.items.count() == 1


def test_added_links_over_the_caps_are_refused(client, monkeypatch):
    removal, secret = published_case()
    too_many = "\n".join(f"https://images.example.org/{n}.jpg" for n in range(21))
    response = client.post("/requests/links/", {"case": removal.case, "secret": secret, "urls": too_many})
    assert response.status_code == 400
    assert "at most 20 links" in response.content.decode()
    monkeypatch.setattr(aftercare, "MAX_LINKS_PER_CASE", 2)
    response = client.post(
        "/requests/links/",
        {
            "case": removal.case,
            "secret": secret,
            "urls": "https://images.example.org/a2.jpg\nhttps://images.example.org/b2.jpg",
        },
    )
    assert response.status_code == 400
    assert "at most 2 links" in response.content.decode()
    assert removal.items.count() == 1


def test_added_links_count_against_the_creation_limit(client, rf):
    from requests_app import limits

    removal, secret = published_case()
    for _ in range(limits.CREATE_PER_CLIENT.count):  # the test client's address, at its limit
        limits.hit(limits.CREATE_PER_CLIENT, limits.client_key(rf.post("/")))
    response = client.post(
        "/requests/links/", {"case": removal.case, "secret": secret, "urls": "https://images.example.org/z.jpg"}
    )
    assert response.status_code == 429
    assert "Retry-After" in response
    assert removal.items.count() == 1


def test_the_picture_is_asked_again_when_the_case_kept_no_fingerprints(client):
    removal, secret = published_case()
    removal.references.all().delete()
    refused = client.post(
        "/requests/links/", {"case": removal.case, "secret": secret, "urls": "https://images.example.org/q.jpg"}
    )
    assert refused.status_code == 400
    assert "add your picture again" in refused.content.decode()
    picture = SimpleUploadedFile("me.jpg", photo_jpeg(), content_type="image/jpeg")
    accepted = client.post(
        "/requests/links/",
        {"case": removal.case, "secret": secret, "urls": "https://images.example.org/q.jpg", "images": picture},
    )
    assert accepted.status_code == 200
    # One new reference picture, kept as its signals with every variant of the reference set.
    assert set(removal.references.values_list("image_index", flat=True)) == {0}
    assert removal.references.count() == len(imaging.REFERENCE_VARIANTS)


def test_watching_is_renewed_from_the_status_page(client):
    removal, secret = submit(monitor_months=1)
    page = client.post("/requests/status/", {"case": removal.case, "secret": secret}).content.decode()
    assert "We are watching new datasets" in page
    response = client.post("/requests/monitoring/", {"case": removal.case, "secret": secret, "months": "24"})
    assert response.status_code == 200
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert stored.monitor_until > timezone.now() + timedelta(days=700)
    assert f"{stored.monitor_until:%-d %B %Y}" in response.content.decode()


def test_watching_for_more_than_24_months_is_refused(client):
    removal, secret = submit()
    response = client.post("/requests/monitoring/", {"case": removal.case, "secret": secret, "months": "36"})
    assert response.status_code == 400
    assert RemovalRequest.objects.get(pk=removal.pk).monitor_until is None


def test_the_intake_form_asks_to_keep_watching(client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    picture = SimpleUploadedFile("me.jpg", photo_jpeg(), content_type="image/jpeg")
    response = client.post(
        "/requests/new/",
        {
            "urls": "https://images.example.org/mine.jpg",
            "images": picture,
            "contact_email": "me@example.org",
            "monitor": "on",
            "monitor_months": "6",
            "monitor_email": "on",
            "confirm": "on",
        },
    )
    assert response.status_code == 303
    removal = RemovalRequest.objects.get()
    assert removal.monitor_email == "me@example.org"
    assert timedelta(days=170) < removal.monitor_until - timezone.now() < timedelta(days=190)


def test_new_copies_are_announced_in_words(client):
    removal, secret = published_case()
    from optout.models import Dataset, DatasetRow

    dataset = Dataset.objects.create(name="datacomp-test")
    row = DatasetRow.objects.create(dataset=dataset, url="https://cdn.example.net/c.jpg", url_sha256="c" * 64)
    services.add_found_item(removal, row, state="match_strong", later=True, sha256_equal=True)
    removal.refresh_from_db()
    services.transition(removal, "in_review", actor=services.Actor("system"), reopened_at=timezone.now())
    body = client.post("/requests/status/", {"case": removal.case, "secret": secret}).content.decode()
    assert "1 new copy of your picture was found in a dataset and is being reviewed." in body
    assert "cdn.example.net" not in body
    assert "Blocked" in body  # the first link stays blocked while the copy is reviewed


# --- The API ---------------------------------------------------------------------------


def test_the_api_takes_an_appeal_and_refuses_a_second(client):
    removal, secret = rejected_case()
    body = {"case": removal.case, "secret": secret, "note": "Please look again."}
    first = client.post("/api/v1/requests/appeal/", body, content_type="application/json")
    assert first.status_code == 200
    assert first.json()["state"] == "appealed"
    services.reject_removal(RemovalRequest.objects.get(pk=removal.pk), reviewer=reviewer("otto"), reason="no_match")
    second = client.post("/api/v1/requests/appeal/", body, content_type="application/json")
    assert second.status_code == 400
    assert "appealed already" in second.json()["detail"]


def test_the_api_adds_links_with_device_signals(client):
    removal, secret = published_case()
    removal.references.all().delete()
    body = {
        "case": removal.case,
        "secret": secret,
        "urls": ["https://images.example.org/api.jpg"],
        "signals": [{"phash": "8f373714acfcf4d0", "sha256": "ab" * 32}],
    }
    response = client.post("/api/v1/requests/links/", body, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["state"] == "checking"
    assert removal.references.count() == 1


def test_the_api_refuses_links_with_a_wrong_secret(client):
    removal, _secret = published_case()
    body = {"case": removal.case, "secret": "wrong", "urls": ["https://images.example.org/api.jpg"]}
    assert client.post("/api/v1/requests/links/", body, content_type="application/json").status_code == 404


def test_the_api_starts_watching_at_intake_and_reports_it(client):
    body = {
        "urls": ["https://images.example.org/mine.jpg"],
        "signals": [{"phash": "8f373714acfcf4d0", "sha256": "ab" * 32}],
        "monitor_months": 12,
    }
    created = client.post("/api/v1/requests/", body, content_type="application/json").json()
    status = client.post(
        "/api/v1/requests/status/",
        {"case": created["case"], "secret": created["secret"]},
        content_type="application/json",
    ).json()
    assert status["monitor_until"] is not None
    too_long = client.post("/api/v1/requests/", {**body, "monitor_months": 25}, content_type="application/json")
    assert too_long.status_code == 400
