"""GET /metrics: Prometheus figures for staff or a token, and nobody else."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from optout.blocklist import holds
from requests_app.models import RemovalItem, RemovalRequest, RequestEvent
from tests.optout.conftest import feed_files, publish, signing_key  # noqa: F401 (fixtures)
from tests.requests_app.builders import force_state, submit

TOKEN = "metrics-token-for-tests-0123456789"


def samples(response) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text answer."""
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def scrape(client, settings):
    settings.OPTOUT_METRICS_TOKEN = TOKEN

    def run():
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        return samples(response)

    return run


@pytest.mark.django_db
def test_metrics_refuse_anonymous_callers_and_wrong_tokens(client, settings):
    settings.OPTOUT_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")


@pytest.mark.django_db
def test_without_a_token_setting_no_bearer_gets_in(client, settings):
    settings.OPTOUT_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer").status_code == 401


@pytest.mark.django_db
def test_staff_see_metrics_and_other_users_do_not(client):
    User.objects.create_user("visitor", password="a-long-test-password")
    client.login(username="visitor", password="a-long-test-password")
    assert client.get("/metrics").status_code == 401
    User.objects.create_user("operator", password="a-long-test-password", is_staff=True)
    client.login(username="operator", password="a-long-test-password")
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_cases_by_state_items_by_verdict_and_oldest_in_each_queue(scrape):
    old, _ = submit()
    RemovalRequest.objects.filter(pk=old.pk).update(state_changed_at=timezone.now() - timedelta(minutes=30))
    submit()
    reviewed, _ = submit(urls=["https://images.example.org/1.jpg", "https://images.example.org/2.jpg"])
    RemovalItem.objects.filter(removal=reviewed).update(state="match_strong")
    force_state(reviewed, "in_review")

    found = scrape()
    assert found[("optout_cases", (("state", "received"),))] == 2
    assert found[("optout_cases", (("state", "in_review"),))] == 1
    assert found[("optout_cases", (("state", "published"),))] == 0
    assert found[("optout_items", (("verdict", "pending"),))] == 2
    assert found[("optout_items", (("verdict", "match_strong"),))] == 2
    assert 1790 <= found[("optout_queue_oldest_age_seconds", (("queue", "received"),))] <= 1830
    assert found[("optout_queue_oldest_age_seconds", (("queue", "checking"),))] == 0


@pytest.mark.django_db
def test_verification_time_is_read_from_the_event_log(scrape):
    removal, _ = submit()
    ended = timezone.now() - timedelta(minutes=5)
    for from_state, to_state, at in [
        ("received", "checking", ended - timedelta(seconds=100)),  # a first try, re-queued
        ("received", "checking", ended - timedelta(seconds=42)),
        ("checking", "in_review", ended),
    ]:
        RequestEvent.objects.create(
            removal=removal, actor_label="system", from_state=from_state, to_state=to_state, created_at=at
        )
    old, _ = submit()  # verified before the window
    RequestEvent.objects.create(
        removal=old,
        actor_label="system",
        from_state="checking",
        to_state="in_review",
        created_at=timezone.now() - timedelta(hours=2),
    )

    found = scrape()
    assert found[("optout_verifications_last_hour", ())] == 1
    assert found[("optout_verification_seconds", (("quantile", "0.5"),))] == pytest.approx(42)
    assert found[("optout_verification_seconds", (("quantile", "1.0"),))] == pytest.approx(42)


@pytest.mark.django_db
def test_release_age_and_entries(scrape, publish):  # noqa: F811 (the imported fixture)
    assert found_release(scrape()) == (0, 0)
    holds.hold(holder="case-1", url_sha256="a" * 64, image_sha256="b" * 64)
    publish()
    version, entries = found_release(scrape())
    assert (version, entries) == (1, 1)


def found_release(found) -> tuple[float, float]:
    assert 0 <= found[("optout_release_age_seconds", ())] < 60
    return found[("optout_release_version", ())], found[("optout_release_entries", ())]


@pytest.mark.django_db
def test_feed_and_lookup_answers_are_counted_by_status(client, scrape):
    before = scrape()
    client.get("/feed/v1/public/manifest.json")  # nothing published: 404
    client.post("/api/v1/blocklist/lookup/", {"items": ["https://example.org/a.jpg"]}, content_type="application/json")
    after = scrape()

    def grew(endpoint, status):
        key = ("optout_http_requests_total", (("endpoint", endpoint), ("status", status)))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("feed_public", "404") == 1
    assert grew("lookup", "200") == 1


@pytest.mark.django_db
def test_queue_depth_comes_from_the_broker(scrape):
    found = scrape()
    assert found[("optout_broker_up", ())] == 1
    assert ("optout_celery_queue_depth", (("queue", "celery"),)) in found
