import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """DATABASE_URL rewritten to the database pytest-django created for this run."""
    url = urlparse(os.environ["DATABASE_URL"])
    return urlunparse(url._replace(path="/" + connection.settings_dict["NAME"]))


test_database_url.__test__ = False  # a helper, not a test


class WorkerProcess:
    """A real `celery worker` process on the test database and the test broker."""

    def __init__(self, log_path: Path):
        self.name = f"e2e-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, DATABASE_URL=test_database_url(), **(extra_env or {}))
        log = open(self.log_path, "ab")  # noqa: SIM115  (kept open for the process's lifetime)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",
                f"--hostname={self.name}",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches the pool's children too
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send sig to the worker's whole process group (SIGTERM: warm shutdown) and wait for it."""
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.process.kill()
            self.process.wait(timeout=10)
        # Pool children may outlive the main process for a moment.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message=lambda: "condition"):
    """Poll until predicate() is truthy; on time-out fail with message() (called late, e.g. to read a log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message()}")


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
