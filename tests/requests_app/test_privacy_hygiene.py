"""Error reports mask a requester's secret and address; the worker logs no requester hash."""

import logging

import pytest
from django.views.debug import SafeExceptionReporterFilter

from optout.imaging import compute_signals
from requests_app import verification
from requests_app.models import RemovalRequest
from tests import images

MASK = SafeExceptionReporterFilter.cleansed_substitute


def masked(response) -> dict:
    return SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)


@pytest.mark.django_db
def test_the_form_views_mask_secret_and_email_in_error_reports(client):
    created = client.post(
        "/requests/new/",
        {"urls": "https://images.example.org/a.jpg", "confirm": "on", "contact_email": "me@example.org"},
    )
    assert masked(created)["contact_email"] == MASK
    assert masked(created)["urls"] == "https://images.example.org/a.jpg"  # only the sensitive ones
    for path in (
        "/requests/status/",
        "/requests/withdraw/",
        "/requests/links/",
        "/requests/appeal/",
        "/requests/monitoring/",
    ):
        response = client.post(path, {"case": "OPT-0000-0000-0000", "secret": "not-the-secret"})
        assert masked(response)["secret"] == MASK, path


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/requests/", "email"),
        ("/api/v1/requests/status/", "secret"),
        ("/api/v1/requests/withdraw/", "secret"),
        ("/api/v1/requests/links/", "secret"),
        ("/api/v1/requests/appeal/", "secret"),
        ("/api/v1/requests/monitoring/", "secret"),
        ("/api/v1/requests/monitoring/", "monitor_email"),
    ],
)
def test_the_api_views_mask_secret_and_email_in_error_reports(client, path, field):
    response = client.post(path, {"urls": "https://images.example.org/a.jpg", "case": "OPT-X", field: "private"})
    assert masked(response)[field] == MASK


@pytest.mark.django_db
def test_verifying_a_case_logs_none_of_the_requesters_hashes(client, caplog, image_server):
    photo = images.photo_jpeg("chelsea")
    image_server.add("/same.jpg", photo, content_type="image/jpeg")
    signals = compute_signals(photo, max_bytes=1 << 24, max_pixels=1 << 26).to_dict()
    created = client.post(
        "/api/v1/requests/",
        {"urls": [image_server.url("/same.jpg")], "signals": [signals]},
        content_type="application/json",
    )
    assert created.status_code == 201
    removal = RemovalRequest.objects.get(case=created.json()["case"])
    with caplog.at_level(logging.DEBUG):
        assert verification.run_verification(removal.pk) is True
    assert caplog.records  # the fetcher did log its fetches
    text = "\n".join(record.getMessage() for record in caplog.records)
    for private in (signals["sha256"], signals["phash"], signals["pdq"], created.json()["secret"]):
        assert private not in text
    assert removal.items.get(url=image_server.url("/same.jpg")).state == "match_strong"
