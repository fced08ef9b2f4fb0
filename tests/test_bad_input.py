"""Bad input gets a clear 400 (or the form's own error), never a 500: JSON nested far too deep."""

import json

import pytest

DEEP = 10_000


def nested(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/requests/", "/api/v1/requests/status/", "/api/v1/requests/withdraw/", "/api/v1/blocklist/lookup/"]
)
def test_json_nested_ten_thousand_deep_is_a_400(client, path):
    response = client.post(path, nested(), content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.django_db
def test_deep_nesting_inside_a_field_is_a_400(client):
    body = '{"urls": ["https://images.example.org/a.jpg"], "signals": ' + nested() + "}"
    response = client.post("/api/v1/requests/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.django_db
def test_the_forms_signals_field_nested_ten_thousand_deep_is_a_field_error(client):
    response = client.post(
        "/requests/new/", {"urls": "https://images.example.org/a.jpg", "confirm": "on", "signals": nested()}
    )
    assert response.status_code == 400  # the form again, with its errors
    assert "The fingerprints computed by this page could not be read." in response.content.decode()


@pytest.mark.django_db
def test_nesting_a_decoder_can_read_still_gets_a_field_error_not_a_500(client):
    """Deep, but within what the decoder reads: the shape is wrong, and the answer says so."""
    body = json.dumps({"urls": ["https://images.example.org/a.jpg"], "signals": [json.loads(nested(500))]})
    response = client.post("/api/v1/requests/", body, content_type="application/json")
    assert response.status_code == 400
    assert "signals" in response.json()
