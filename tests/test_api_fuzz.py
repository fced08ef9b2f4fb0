"""A bounded schemathesis run against the public API's own OpenAPI schema: no 500, responses as documented.

The schema is loaded from ``/api/schema/`` through the WSGI app, in process, on the test database; each
operation gets a few dozen generated requests, valid and then invalid ones, and every
response is checked. ``derandomize`` keeps the run the same from one test run to the next.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings

from requests_app import limits

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.content_type_conformance,
]
EXAMPLES_PER_OPERATION = 30


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Calling the WSGI app directly fires Django's request signals, whose handler closes the database
    connection at the end of each request; inside the test's transaction that leaves PostgreSQL's
    connection closed for the next request. Django's own test Client disconnects it the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def operations():
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.django_db
def test_the_schema_lists_the_public_operations():
    labels = {operation.label for operation in operations()}
    assert {
        "POST /api/v1/requests/",
        "POST /api/v1/requests/status/",
        "POST /api/v1/requests/withdraw/",
        "POST /api/v1/blocklist/lookup/",
        "POST /api/v1/requests/links/",
        "POST /api/v1/requests/appeal/",
        "POST /api/v1/requests/monitoring/",
    } <= labels


@pytest.mark.django_db
@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
@pytest.mark.parametrize("label", ["requests", "status", "withdraw", "lookup", "links", "appeal", "monitoring"])
def test_the_public_api_never_answers_500_and_keeps_to_its_schema(label, mode, monkeypatch):
    paths = {
        "requests": "/api/v1/requests/",
        "status": "/api/v1/requests/status/",
        "withdraw": "/api/v1/requests/withdraw/",
        "lookup": "/api/v1/blocklist/lookup/",
        "links": "/api/v1/requests/links/",
        "appeal": "/api/v1/requests/appeal/",
        "monitoring": "/api/v1/requests/monitoring/",
    }
    # Rate limits would answer most generated requests with 429 before the input is even read.
    monkeypatch.setattr(limits, "hit", lambda *args, **kwargs: 0)
    monkeypatch.setattr(limits, "waiting", lambda *args, **kwargs: 0)
    (operation,) = [op for op in operations() if op.path == paths[label]]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    def run(case):
        case.call_and_validate(checks=CHECKS)

    run()
