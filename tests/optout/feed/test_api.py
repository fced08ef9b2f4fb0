import pytest

from optout.blocklist import holds
from optout.client.canonical import url_sha256

pytestmark = pytest.mark.django_db

LOOKUP = "/api/v1/blocklist/lookup/"
BLOCKED_URL = "https://images.example.org/private/a.jpg"


def post(client, items, **extra):
    return client.post(LOOKUP, {"items": items}, content_type="application/json", **extra)


def test_answers_from_the_latest_release_by_url_or_hash(client, publish):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED_URL))
    publish()
    holds.hold(holder="item:2", url_sha256=url_sha256("https://example.com/approved-not-yet-published.jpg"))
    items = [
        "HTTPS://Images.Example.org/private/./a.jpg#frag",  # the same canonical URL
        url_sha256(BLOCKED_URL).upper(),
        "https://example.com/approved-not-yet-published.jpg",
        "https://example.com/other.jpg",
        "http:///no-host",
    ]
    response = post(client, items)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    results = body["results"]
    assert [r["blocked"] for r in results] == [True, True, False, False, False]
    assert results[0]["url_sha256"] == results[1]["url_sha256"] == url_sha256(BLOCKED_URL)
    assert results[3]["url_sha256"] == url_sha256("https://example.com/other.jpg")
    assert results[4]["url_sha256"] is None and results[4]["error"]
    assert "error" not in results[0]


def test_a_withdrawn_entry_stays_blocked_until_the_next_release(client, publish):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED_URL))
    publish()
    holds.release_hold(holder="item:1")
    assert post(client, [BLOCKED_URL]).json()["results"][0]["blocked"] is True
    publish()
    body = post(client, [BLOCKED_URL]).json()
    assert body["version"] == 2 and body["results"][0]["blocked"] is False


def test_before_any_release_nothing_is_blocked(client):
    body = post(client, [BLOCKED_URL]).json()
    assert body == {"version": None, "results": [{"url_sha256": url_sha256(BLOCKED_URL), "blocked": False}]}


def test_takes_up_to_ten_thousand_items(client, publish):
    holds.hold(holder="item:1", url_sha256=url_sha256("https://example.com/4321.jpg"))
    publish()
    items = [f"https://example.com/{i}.jpg" for i in range(10_000)]
    results = post(client, items).json()["results"]
    assert len(results) == 10_000
    assert [i for i, r in enumerate(results) if r["blocked"]] == [4321]
    assert post(client, [*items, "https://example.com/one-more.jpg"]).status_code == 400
    assert post(client, []).status_code == 400


def test_lookups_are_throttled_per_client(client, settings):
    settings.OPTOUT_LOOKUP_REQUESTS_PER_HOUR = 2
    assert post(client, [BLOCKED_URL]).status_code == 200
    assert post(client, [BLOCKED_URL]).status_code == 200
    limited = post(client, [BLOCKED_URL])
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert post(client, [BLOCKED_URL], REMOTE_ADDR="192.0.2.7").status_code == 200


def test_lookup_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"][LOOKUP]["post"]
    assert "200" in operation["responses"]
    assert "LookupInput" in schema["components"]["schemas"]
    assert "LookupOutput" in schema["components"]["schemas"]
