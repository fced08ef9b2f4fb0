"""PostgreSQL or Redis restarting: clear 503s, replaced connections, tasks that try again."""

import psycopg2
import pytest
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from requests_app import tasks, verification
from requests_app.models import RemovalRequest
from tests.requests_app.builders import submit

REDIS_DOWN = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}


def _terminate_django_connection() -> None:
    """What a PostgreSQL restart does to a kept-open connection: the server ends it."""
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    other = psycopg2.connect(**{key: value for key, value in params.items() if key != "cursor_factory"})
    try:
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


@pytest.mark.django_db
def test_api_answers_503_with_retry_after_while_redis_is_down(client, settings):
    settings.CACHES = REDIS_DOWN
    response = client.post(
        "/api/v1/requests/status/", {"case": "OPT-AAAA-BBBB", "secret": "x" * 20}, content_type="application/json"
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    assert "try again" in response.json()["detail"]


@pytest.mark.django_db
def test_a_request_refused_by_an_outage_is_not_created(client, settings):
    settings.CACHES = REDIS_DOWN
    response = client.post(
        "/api/v1/requests/",
        {"urls": ["https://images.example.org/a.jpg"], "signals": []},
        content_type="application/json",
    )
    assert response.status_code == 503
    assert not RemovalRequest.objects.exists()


@pytest.mark.django_db
def test_pages_answer_a_plain_503_while_redis_is_down(client, settings):
    settings.CACHES = REDIS_DOWN
    response = client.post("/requests/status/", {"case": "OPT-AAAA-BBBB", "secret": "x" * 20})
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")
    assert b"briefly unavailable" in response.content


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_query_on_a_connection_the_server_ended_is_a_503(client):
    removal, secret = submit()
    connection.ensure_connection()
    _terminate_django_connection()
    response = client.post(
        "/api/v1/requests/status/", {"case": removal.case, "secret": secret}, content_type="application/json"
    )
    assert response.status_code == 503
    close_old_connections()  # the end of that request: the broken connection is dropped


def _reconnect_kept_open(monkeypatch, *, health_checks: bool) -> None:
    # The tests run with DJANGO_DB_CONN_MAX_AGE=0; production keeps connections open, which is what breaks.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", health_checks)
    connection.close()
    connection.ensure_connection()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ended_is_replaced_at_the_next_request(monkeypatch):
    from django.conf import settings

    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True
    _reconnect_kept_open(monkeypatch, health_checks=True)
    _terminate_django_connection()
    close_old_connections()  # what Django runs when the next request (or task) starts
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_without_health_checks_the_next_request_would_fail(monkeypatch):
    _reconnect_kept_open(monkeypatch, health_checks=False)
    _terminate_django_connection()
    close_old_connections()
    with pytest.raises((OperationalError, InterfaceError)), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()


@pytest.mark.django_db
def test_verification_retries_through_a_database_outage(monkeypatch, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    calls = []

    def flaky(removal_id):
        calls.append(removal_id)
        if len(calls) < 3:
            raise OperationalError("the database system is shutting down")
        return True

    monkeypatch.setattr(verification, "run_verification", flaky)
    result = tasks.verify_removal.apply(args=[7])
    assert result.successful()
    assert calls == [7, 7, 7]


@pytest.mark.django_db
def test_verification_gives_up_on_an_outage_that_does_not_end(monkeypatch):
    calls = []

    def down(removal_id):
        calls.append(removal_id)
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(verification, "run_verification", down)
    result = tasks.verify_removal.apply(args=[7])
    assert result.failed()
    assert len(calls) == tasks.OUTAGE_RETRIES + 1  # then the sweeper takes over
