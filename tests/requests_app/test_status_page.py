import re

import pytest

from requests_app.models import RemovalRequest
from tests.requests_app.builders import submit


@pytest.fixture
def case(db):
    removal, secret = submit(urls=["https://images.example.org/mine.jpg"], contact_email="me@example.org")
    return removal, secret


def test_the_status_form_asks_for_case_and_secret(client, db):
    response = client.get("/requests/status/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert b"Case reference" in response.content


def test_the_right_secret_shows_the_case_in_words(client, case):
    removal, secret = case
    response = client.post("/requests/status/", {"case": removal.case, "secret": secret})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-state="received"' in body
    assert "Still being checked" in body
    assert "distance" not in body.lower()
    assert response["Referrer-Policy"] == "no-referrer"


def test_a_wrong_secret_and_an_unknown_case_read_the_same(client, case):
    removal, secret = case
    wrong = client.post("/requests/status/", {"case": removal.case, "secret": "nope"})
    unknown = client.post("/requests/status/", {"case": "OPT-AAAA-BBBB-CCCC", "secret": "nope"})
    assert wrong.status_code == unknown.status_code == 404

    def page(response) -> str:  # the same, once the typed case and the per-render CSRF mask are left out
        body = response.content.decode().replace("OPT-AAAA-BBBB-CCCC", "").replace(removal.case, "")
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", body)

    assert page(wrong) == page(unknown)


def test_withdrawal_needs_the_box_ticked_then_deletes_the_email(client, case):
    removal, secret = case
    unticked = client.post("/requests/withdraw/", {"case": removal.case, "secret": secret})
    assert unticked.status_code == 400
    assert "Tick the box" in unticked.content.decode()
    assert RemovalRequest.objects.get(pk=removal.pk).state == "received"
    done = client.post("/requests/withdraw/", {"case": removal.case, "secret": secret, "confirm": "on"})
    assert done.status_code == 200
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert (stored.state, stored.contact_email) == ("withdrawn", "")
    assert "withdrawn" in done.content.decode()


def test_withdrawal_with_a_wrong_secret_changes_nothing(client, case):
    removal, _ = case
    response = client.post("/requests/withdraw/", {"case": removal.case, "secret": "guess", "confirm": "on"})
    assert response.status_code == 404
    assert RemovalRequest.objects.get(pk=removal.pk).state == "received"


def test_status_lookups_are_rate_limited(client, case):
    removal, secret = case
    codes = [
        client.post("/requests/status/", {"case": f"OPT-AAAA-BBBB-{n:04d}", "secret": "x"}).status_code
        for n in range(31)
    ]
    assert codes[:30] == [404] * 30 and codes[30] == 429
    limited = client.post("/requests/status/", {"case": removal.case, "secret": secret})
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert removal.case in limited.content.decode()  # the case is kept to try again; the secret never
    assert secret not in limited.content.decode()
