"""Abuse limits that hold: IPv6 /48s and a global hourly cap, no lockout of a case's owner or of a
reviewer by a stranger, and an explicit number of trusted proxy hops."""

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory

from optout.feed import throttling
from optout.imaging import compute_signals
from requests_app import limits
from tests import images, users
from tests.requests_app.builders import submit

URL = "https://images.example.org/private/photo.jpg"


@pytest.fixture(scope="module")
def signals():
    return compute_signals(images.photo_jpeg(size=(64, 48)), max_bytes=1 << 24, max_pixels=1 << 26).to_dict()


def create(client, signals, address):
    return client.post(
        "/api/v1/requests/", {"urls": [URL], "signals": [signals]}, content_type="application/json", REMOTE_ADDR=address
    )


@pytest.mark.django_db
def test_twelve_64s_of_one_48_share_the_48s_bucket(client, signals):
    assert limits.CREATE_PER_NETWORK.count == 30 and limits.CREATE_PER_CLIENT.count == 10
    accepted = 0
    for subnet in range(12):  # 2001:db8:7:0::/64 ... 2001:db8:7:b::/64, one /48
        for host in range(3):
            response = create(client, signals, f"2001:db8:7:{subnet:x}::{host + 1}")
            assert response.status_code in (201, 429)
            accepted += response.status_code == 201
    assert accepted == limits.CREATE_PER_NETWORK.count
    assert create(client, signals, "2001:db8:7:ff::1").status_code == 429  # a fresh /64, same /48
    assert create(client, signals, "2001:db8:8::1").status_code == 201  # another /48


@pytest.mark.django_db
def test_a_global_hourly_cap_holds_across_networks(client, signals, settings):
    settings.OPTOUT_MAX_NEW_REQUESTS_PER_HOUR = 3
    for n in range(3):
        assert create(client, signals, f"198.51.100.{n + 1}").status_code == 201
    refused = create(client, signals, "203.0.113.77")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    form = client.post("/requests/new/", {"urls": URL, "confirm": "on"}, REMOTE_ADDR="192.0.2.1")
    assert form.status_code == 429


@pytest.mark.django_db
def test_a_stranger_guessing_a_case_cannot_lock_its_owner_out(client):
    removal, secret = submit()
    stranger, owner = "203.0.113.9", "198.51.100.20"
    answers = [
        client.post(
            "/api/v1/requests/status/",
            {"case": removal.case, "secret": f"wrong-{n}"},
            content_type="application/json",
            REMOTE_ADDR=stranger,
        ).status_code
        for n in range(limits.LOOKUP_PER_CASE.count + 3)
    ]
    assert answers[: limits.LOOKUP_PER_CASE.count] == [404] * limits.LOOKUP_PER_CASE.count
    assert answers[-1] == 429  # the stranger is stopped...
    seen = client.post(
        "/api/v1/requests/status/",
        {"case": removal.case, "secret": secret},
        content_type="application/json",
        REMOTE_ADDR=owner,
    )
    assert seen.status_code == 200  # ...the owner is not
    page = client.post("/requests/status/", {"case": removal.case, "secret": secret}, REMOTE_ADDR=owner)
    assert page.status_code == 200
    withdrawn = client.post(
        "/api/v1/requests/withdraw/",
        {"case": removal.case, "secret": secret},
        content_type="application/json",
        REMOTE_ADDR=owner,
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"


@pytest.mark.django_db
def test_no_case_reference_in_email_subjects(mailoutbox, django_capture_on_commit_callbacks):
    from requests_app import services
    from tests.requests_app.builders import in_review, reviewer

    removal = in_review(["no_match"], contact_email="me@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_removal(removal, reviewer=reviewer(), reason="no_match")
    (mail,) = mailoutbox
    assert removal.case not in mail.subject
    assert removal.case in mail.body


@pytest.mark.django_db
def test_a_stranger_cannot_lock_a_reviewer_out_by_name(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, not security
    users.staff("rita", password="a-long-test-password")
    for n in range(15):
        client.post("/admin/login/", {"username": "rita", "password": f"guess-{n}"}, REMOTE_ADDR="203.0.113.9")
    stranger = client.post("/admin/login/", {"username": "rita", "password": "x"}, REMOTE_ADDR="203.0.113.9")
    assert stranger.status_code == 429
    rita = client.post(
        "/admin/login/",
        {"username": "rita", "password": "a-long-test-password", "next": "/admin/"},
        REMOTE_ADDR="198.51.100.30",
    )
    assert rita.status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get(username="rita").pk)


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "198.51.100.1", "10.0.0.2"),  # no proxy trusted: the header is the client's own claim
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # what one proxy saw; the first entry is spoofed
        (2, "6.6.6.6, 198.51.100.1, 192.0.2.80", "198.51.100.1"),  # CDN then load balancer
        (2, "198.51.100.1", "10.0.0.2"),  # did not pass through both proxies: the connecting address
    ],
)
def test_the_client_address_is_the_entry_the_trusted_proxy_hops_name(settings, hops, forwarded, expected):
    settings.DJANGO_TRUSTED_PROXY_HOPS = hops
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert throttling.client_address(request) == expected
