"""Faults under traffic: PostgreSQL restarts, Redis restarts, the worker is killed. Nothing is lost.

The production set-up of bench/load/stack.py (gunicorn with config/gunicorn.py, a Celery worker,
DJANGO_DEBUG=0) runs on a PostgreSQL and a Redis that this module starts from a temporary
folder, so that they can be restarted without touching the shared servers. Requesters keep
filing while the fault happens; afterwards every request that got a 201 must be in review with
one verdict per link and no event twice, every other answer must be a clear 503 (never a 500,
never no answer), and /healthz must have said 503 during the outage and 200 after.
"""

import glob
import os
import shutil
import signal
import threading
import time

import pytest

from bench.load.processes import free_port, wait_until
from bench.load.servers import OwnPostgres, OwnRedis
from bench.load.stack import HealthLog, LoopbackAddresses, Stack, dataset_url, post_json
from optout.imaging import compute_signals
from optout.index import demo

pytestmark = [pytest.mark.timeout(900)]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
HAVE_BINARIES = bool(shutil.which("redis-server") and glob.glob("/usr/lib/postgresql/*/bin/initdb"))
SIGNALS = compute_signals(demo.image_bytes("coffee-original"), max_bytes=1 << 24, max_pixels=1 << 26).to_dict()
URLS = [dataset_url("coffee-original"), dataset_url("coffee-mirrored")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not HAVE_BINARIES:
        if REQUIRE_SERVICES:
            pytest.fail("the fault tests need PostgreSQL's binaries and redis-server (REQUIRE_SERVICES=1)")
        pytest.skip("needs PostgreSQL's binaries under /usr/lib/postgresql and redis-server")
    folder = tmp_path_factory.mktemp("faults")
    postgres = OwnPostgres(port=free_port())
    redis = OwnRedis(folder / "redis", port=free_port())
    with Stack(folder, postgres=postgres, redis=redis, web_port=free_port(), database="optout_faults") as running:
        # Short deadlines, so that the sweeper finds a lost message within the test.
        running.env |= {"OPTOUT_CHECK_DEADLINE_SECONDS": "10", "OPTOUT_RECEIVED_GRACE_SECONDS": "5"}
        running.prepare()
        running.start(web_workers=2, worker_concurrency=1, beat=False)
        yield running


class Filing:
    """Requesters filing (and looking up their cases) from fresh loopback addresses, in a thread."""

    def __init__(self, stack: Stack, *, seconds: float, interval: float = 0.3, limit: int = 80):
        self.stack, self.seconds, self.interval, self.limit = stack, seconds, interval, limit
        self.answers: list[tuple[float, str, int]] = []  # (when, what, status)
        self.cases: dict[str, int] = {}
        self._addresses = LoopbackAddresses(second_octet=1)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.seconds
        secrets: list[tuple[str, str]] = []
        for _ in range(self.limit):
            if time.monotonic() > end:
                break
            status, body = post_json(
                self.stack.base_url,
                "/api/v1/requests/",
                {"urls": URLS, "signals": [SIGNALS]},
                source=self._addresses.take(),
            )
            self.answers.append((time.monotonic(), "create", status))
            if status == 201:
                self.cases[body["case"]] = len(URLS)
                secrets.append((body["case"], body["secret"]))
            if secrets:
                case, secret = secrets[-1]
                status, _ = post_json(
                    self.stack.base_url,
                    "/api/v1/requests/status/",
                    {"case": case, "secret": secret},
                    source=self._addresses.take(),
                )
                self.answers.append((time.monotonic(), "status", status))
            time.sleep(self.interval)

    def __enter__(self) -> "Filing":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._thread.join(timeout=self.seconds + 120)

    def statuses(self) -> set[int]:
        return {status for _, _, status in self.answers}

    def created_after(self, moment: float) -> int:
        return sum(1 for at, what, status in self.answers if what == "create" and status == 201 and at > moment)


def run_fault(stack: Stack, inject, *, seconds: float = 16) -> tuple[Filing, HealthLog, tuple[float, float]]:
    with HealthLog(stack) as health, Filing(stack, seconds=seconds) as filing:
        time.sleep(3)
        outage = inject()
    wait_until(lambda: stack.health() == 200, timeout=60, what="/healthz to say 200 again")
    return filing, health, outage


def assert_nothing_lost(stack: Stack, filing: Filing) -> None:
    assert filing.cases, "no request was accepted at all"
    report = stack.wait_reviewed(filing.cases, timeout=180, sweep_every=6)
    assert report == {
        "cases": len(filing.cases),
        "lost": [],
        "not_reviewed": [],
        "items_missing": [],
        "items_pending": 0,
        "duplicated_events": 0,
    }, stack.worker.log()[-4000:]


def test_a_postgres_restart_answers_503s_and_loses_nothing(stack):
    filing, health, (down, up) = run_fault(stack, lambda: stack.postgres.restart(down_for=4))
    assert filing.statuses() <= {201, 200, 503}, filing.answers
    assert 503 in filing.statuses()  # the outage was seen, and said clearly
    assert filing.created_after(up) > 0  # and it ended
    assert 503 in health.statuses(down, up), health.summary()
    assert health.last() == 200
    assert_nothing_lost(stack, filing)


def test_a_redis_restart_answers_503s_and_loses_nothing(stack):
    filing, health, (down, up) = run_fault(stack, lambda: stack.redis.restart(down_for=4))
    assert filing.statuses() <= {201, 200, 503}, filing.answers
    assert 503 in filing.statuses()
    assert filing.created_after(up) > 0
    assert 503 in health.statuses(down, up), health.summary()
    assert health.last() == 200
    assert_nothing_lost(stack, filing)


def test_a_killed_worker_loses_nothing(stack):
    filing, health, (down, up) = run_fault(stack, lambda: stack.kill_worker(down_for=3))
    assert filing.statuses() <= {201, 200}, filing.answers  # the web side never noticed
    assert health.statuses(down, up) == {200}, health.summary()
    assert_nothing_lost(stack, filing)


def test_a_killed_web_worker_is_replaced(stack):
    before = stack.web.children()
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in stack.web.children() and len(stack.web.children()) == len(before), timeout=60)
    status, body = post_json(
        stack.base_url, "/api/v1/requests/", {"urls": URLS, "signals": [SIGNALS]}, source="127.1.250.1"
    )
    assert status == 201
    assert stack.wait_reviewed({body["case"]: len(URLS)}, timeout=120, sweep_every=6)["not_reviewed"] == []
