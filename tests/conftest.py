"""Shared fixtures and the rules for tests that need real services.

Tests marked ``postgres``, ``redis`` or ``browser`` skip when that service is
absent, except under ``REQUIRE_SERVICES=1`` (CI), where an absent service fails
the run instead: a green CI must mean those tests ran.
"""

import ipaddress
import os
import shutil
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.core.cache import cache

from optout.fetch import connection
from tests.servers import ImageServer

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
CHROMIUM = shutil.which("chromium")


def _redis_reachable() -> bool:
    if not settings.REDIS_URL:
        return False
    url = urlparse(settings.REDIS_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=2):
            return True
    except OSError:
        return False


def _is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_report_header(config):
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = settings.CELERY_BROKER_URL.split("://", 1)[0]
    return [
        f"optout backends: database={database} broker={broker} cache={'redis' if settings.REDIS_URL else 'file'} "
        f"chromium={'yes' if CHROMIUM else 'no'} REQUIRE_SERVICES={int(REQUIRE_SERVICES)}"
    ]


def pytest_sessionstart(session):
    if REQUIRE_SERVICES:
        problems = []
        if not _is_postgres():
            problems.append("DATABASE_URL does not point to PostgreSQL")
        if not _redis_reachable():
            problems.append("REDIS_URL is unset or Redis is unreachable")
        if not CHROMIUM:
            problems.append("chromium is not installed")
        if problems:
            raise pytest.UsageError("REQUIRE_SERVICES=1 but " + "; ".join(problems))


def pytest_collection_modifyitems(config, items):
    available = {"postgres": _is_postgres(), "redis": _redis_reachable(), "browser": bool(CHROMIUM)}
    for item in items:
        for name, ok in available.items():
            if item.get_closest_marker(name) and not ok:
                item.add_marker(
                    pytest.mark.skip(reason=f"needs {name} (set it up, or REQUIRE_SERVICES=1 fails instead)")
                )


def _uses_database(request) -> bool:
    """Whether any collected test of this module uses the database. pytest-django creates the test
    database only for a session that has such tests: a module without any, run alone, has none."""
    return any(
        item.module is request.module
        and (item.get_closest_marker("django_db") or "django_db_setup" in item.fixturenames)
        for item in request.session.items
    )


@pytest.fixture(scope="module", autouse=True)
def _vacuumed_dataset_rows(request):
    """Each test module starts with the dataset rows table vacuumed and analysed, on PostgreSQL.

    This machine's PostgreSQL runs without autovacuum (its conf.d turns it off), so the rows that earlier
    modules bulk-load and roll back stay in the matcher's indexes as dead entries, with no statistics:
    a later module's discovery queries then took minutes instead of milliseconds. VACUUM cannot run
    inside a transaction, so it runs here, between modules, on the autocommit connection.
    """
    if _is_postgres() and _uses_database(request):
        request.getfixturevalue("django_db_setup")
        from django.db import connection as db

        with request.getfixturevalue("django_db_blocker").unblock(), db.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE optout_datasetrow")
    yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache: start every test with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def image_server():
    """A started loopback ``ImageServer`` (see tests/servers.py)."""
    with ImageServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fetch_connections(monkeypatch):
    """Every connection the fetcher opens, as (address, port); anything but loopback fails the test.

    Tests never send traffic off this machine: a refused address must be refused
    before connecting, and if a bug ever let one through, this stops it first.
    """
    opened: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
    real_open_socket = connection.open_socket

    def guarded_open_socket(address, port, timeout):
        opened.append((address, port))
        if not address.is_loopback:
            raise AssertionError(f"the fetcher tried to connect to {address}")
        return real_open_socket(address, port, timeout)

    monkeypatch.setattr(connection, "open_socket", guarded_open_socket)
    return opened
