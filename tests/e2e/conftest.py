import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings
from django.db import connection

from bench.load.processes import Process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """DATABASE_URL rewritten to the database pytest-django created for this run."""
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path="/" + connection.settings_dict["NAME"]))


test_database_url.__test__ = False  # a helper, not a test


class WorkerProcess(Process):
    """A real `celery worker` process on the test database and the test broker."""

    def __init__(self, log_path: Path):
        hostname = f"e2e-{uuid.uuid4().hex[:8]}@localhost"  # the worker's name, as its heartbeat says it
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork", "--concurrency=1"]
        argv += ["--loglevel=INFO", f"--hostname={hostname}", "--without-gossip", "--without-mingle"]
        super().__init__(hostname, argv, {}, log_path)

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ, DATABASE_URL=test_database_url(), **(extra_env or {}))
        super().start()


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message=lambda: "condition"):
    """Poll until predicate() is truthy; on time-out fail with message() (called late, e.g. to read a log)."""
    return wait_until(predicate, timeout=timeout, interval=interval, what=message)


@pytest.fixture
def celery_worker_process(tmp_path):
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("the end-to-end worker tests run against Redis")
    from config.celery import app

    app.control.purge()  # no stale messages from an earlier, interrupted run
    worker = WorkerProcess(tmp_path / "worker.log")
    worker.start()
    yield worker
    worker.stop()
