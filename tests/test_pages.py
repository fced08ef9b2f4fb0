import time

import pytest

from optout.models import WorkerHeartbeat


@pytest.mark.django_db
def test_landing_page_says_what_the_service_does(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "without telling us who you are" in body
    assert 'lang="en"' in body
    assert "http://" not in body.replace("http://testserver", "") and "https://" not in body


@pytest.mark.django_db
def test_pages_forbid_foreign_scripts(client):
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert response.json()["broker"] == "ok"
    assert response.json()["worker_seen_seconds_ago"] is None


@pytest.mark.django_db
def test_healthz_reports_worker_heartbeat_age(client):
    from django.utils import timezone

    WorkerHeartbeat.objects.create(worker="w@host", seen_at=timezone.now() - timezone.timedelta(seconds=90))
    assert 89 <= client.get("/healthz").json()["worker_seen_seconds_ago"] <= 95


@pytest.mark.django_db
def test_healthz_fails_when_the_broker_is_down(client, settings, monkeypatch):
    from config.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    started = time.monotonic()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "down"
    # At once, not after kombu's retry 2 s later (by which time a restarted broker may be back: a 200).
    assert time.monotonic() - started < 1.5


@pytest.mark.django_db
def test_admin_login_is_served_at_the_configured_path(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"Opt-out review" in response.content
