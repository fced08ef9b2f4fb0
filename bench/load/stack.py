"""The production set-up on one machine, for the load harness and the fault tests.

    with Stack(tmp, postgres=OwnPostgres(port=8163), redis=OwnRedis(tmp / "redis", port=8164),
               web_port=8161) as stack:
        stack.prepare()            # migrate, signing key, demo dataset, a first release
        stack.start()              # gunicorn (config/gunicorn.py), a Celery worker, Celery beat
        stack.redis.restart(down_for=5)
        report = stack.audit(cases)

gunicorn runs with the Docker image's settings (``config/gunicorn.py``) and production-like
variables (``DJANGO_DEBUG=0``, no loopback fetching). PostgreSQL and Redis are either a server
that is already running (a database of its own is created and dropped) or instances this
module starts from a temporary folder with Debian's binaries, which can be restarted without
touching anybody else's. Everything listens on 127.0.0.1 only.
"""

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psycopg2

from bench.load.processes import ROOT, Process, wait_until
from bench.load.servers import OwnRedis, SharedPostgres, drop_database

PYTHON = sys.executable
# Where the load's dataset says its pictures are; never contacted (the rows carry their signals).
DATASET_BASE = "https://images.example.org"


def dataset_url(name: str) -> str:
    """The URL of a demo picture in the load's dataset, e.g. ``coffee-mirrored``."""
    return f"{DATASET_BASE}/demo/images/{name}.jpg"


PREPARE = """
import hashlib
from django.core.management import call_command
from django.utils import timezone
from optout.models import BlocklistEntry, BlocklistHold
call_command("load_demo")
now = timezone.now()
keys = [hashlib.sha256(b"load-%d" % n).hexdigest() for n in range({entries})]
made = BlocklistEntry.objects.bulk_create(
    [BlocklistEntry(url_sha256=key, sha256=key[::-1], blocked=True, dirty=True, created_at=now, changed_at=now)
     for key in keys], batch_size=5000)
BlocklistHold.objects.bulk_create(
    [BlocklistHold(entry=entry, holder=f"load:{{entry.pk}}", created_at=now) for entry in made], batch_size=5000)
call_command("publish_blocklist")
"""


class Stack:
    def __init__(self, folder: Path, *, postgres, redis: OwnRedis, web_port: int, database: str = "optout_load"):
        self.folder = Path(folder)
        self.postgres, self.redis = postgres, redis
        self.web_port = web_port
        self.database = database
        self.metrics_token = secrets.token_urlsafe(24)
        self.env: dict[str, str] = {}
        self.web = self.worker = self.beat = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def __enter__(self) -> "Stack":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        self.postgres.start()
        database_url = self.postgres.create_database(self.database)
        var = self.folder / "var"
        var.mkdir(exist_ok=True)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "OPTOUT_", "CELERY_", "PROMETHEUS_")) and key not in ("REDIS_URL",)
        } | {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis.url(0),
            "OPTOUT_VAR_DIR": str(var),
            "DJANGO_MEDIA_ROOT": str(self.folder / "media"),
            "OPTOUT_SIGNING_KEY_FILE": str(var / "minisign.key"),
            "OPTOUT_PUBLIC_URL": self.base_url,
            "OPTOUT_METRICS_TOKEN": self.metrics_token,
            "PROMETHEUS_MULTIPROC_DIR": str(self.folder / "metrics"),
            # The sweeper's deadlines, shortened so that a lost message is found within the run.
            "OPTOUT_CHECK_DEADLINE_SECONDS": "60",
            "OPTOUT_RECEIVED_GRACE_SECONDS": "30",
        }
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if isinstance(self.postgres, SharedPostgres):
            with contextlib.suppress(Exception):
                drop_database(self.postgres.server_url, self.database)
        with contextlib.suppress(Exception):
            self.postgres.remove()

    def manage(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env | (env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare(self, *, blocklist_entries: int = 0) -> None:
        """Migrate, make the signing key, load the demo dataset, and publish release 1."""
        started = time.monotonic()
        self.manage("migrate", "--noinput", "-v0")
        print(f"  migrated in {time.monotonic() - started:.0f}s", flush=True)
        self.manage("generate_signing_key", "--if-missing")
        # One process for the rest (each manage.py start costs seconds on a loaded machine). The demo's
        # photographs and copies become rows of a dataset on a public host name: the intake refuses
        # loopback links unless OPTOUT_FETCH_ALLOW_LOOPBACK, which production never sets; the rows carry
        # their signals, so verification fetches nothing. Blocklist entries are made in bulk, as
        # bench/publish.py does, so the feed's artifacts have a realistic size.
        self.manage("shell", "-c", PREPARE.format(entries=blocklist_entries), env={"OPTOUT_PUBLIC_URL": DATASET_BASE})
        print(f"  demo dataset, {blocklist_entries} blocklist entries, release 1: {time.monotonic() - started:.0f}s")

    # --- processes -------------------------------------------------------------

    def start(self, *, web_workers: int | None = None, worker_concurrency: int = 2, beat: bool = True) -> None:
        (self.folder / "metrics").mkdir(exist_ok=True)
        argv = [PYTHON, "-m", "gunicorn", "-c", "config/gunicorn.py", "--bind", f"127.0.0.1:{self.web_port}"]
        if web_workers:
            argv += ["--workers", str(web_workers)]
        self.web = Process("gunicorn", [*argv, "config.wsgi:application"], self.env, self.folder / "gunicorn.log")
        self.web.start()
        self.worker = self._worker_process(worker_concurrency)
        self.worker.start()
        if beat:
            self.beat = Process(
                "beat",
                [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"]
                + [f"--schedule={self.folder / 'celerybeat-schedule'}"],
                self.env,
                self.folder / "beat.log",
            )
            self.beat.start()
        wait_until(lambda: self.health() == 200, timeout=90, what="/healthz to say 200\n" + self.web.log()[-3000:])

    def _worker_process(self, concurrency: int) -> Process:
        return Process(
            "worker",
            [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", f"--concurrency={concurrency}"]
            + ["--without-gossip", "--without-mingle", f"--hostname=load-{secrets.token_hex(3)}@localhost"],
            self.env,
            self.folder / "worker.log",
        )

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.web):
            if process is not None:
                process.stop()

    def kill_worker(self, *, down_for: float) -> tuple[float, float]:
        """SIGKILL the Celery worker and its pool, then start a new one (a supervisor's restart)."""
        concurrency = next(arg.split("=")[1] for arg in self.worker.argv if arg.startswith("--concurrency="))
        self.worker.stop(signal.SIGKILL)
        down = time.monotonic()
        time.sleep(down_for)
        self.worker = self._worker_process(int(concurrency))
        self.worker.start()
        return down, time.monotonic()

    def kill_web_worker(self) -> tuple[float, float]:
        """SIGKILL one gunicorn worker; the gunicorn master starts another."""
        victim = self.web.children()[0]
        os.kill(victim, signal.SIGKILL)
        down = time.monotonic()
        wait_until(lambda: victim not in self.web.children() and len(self.web.children()) >= 1, timeout=30)
        return down, time.monotonic()

    def sweep(self) -> None:
        """What Celery beat does every minute: the sweeper, sent through the broker."""
        self.manage("shell", "-c", "from requests_app.tasks import sweep_stuck_requests; sweep_stuck_requests.delay()")

    # --- checks ------------------------------------------------------------------

    def health(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=15) as response:  # noqa: S310 (loopback)
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def metrics(self) -> str:
        request = urllib.request.Request(
            f"{self.base_url}/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.read().decode()

    def connect(self):
        return psycopg2.connect(self.env["DATABASE_URL"])

    def audit(self, cases: dict[str, int]) -> dict:
        """For the cases that got a 201 ({case: number of URLs sent}): what was lost or duplicated."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute(
                'SELECT r."case", r.state, count(i.id) FILTER (WHERE NOT i.found_by_system), '
                "count(i.id) FILTER (WHERE i.state = 'pending') "
                "FROM requests_app_removalrequest r LEFT JOIN requests_app_removalitem i ON i.removal_id = r.id "
                'WHERE r."case" = ANY(%s) GROUP BY r."case", r.state',
                [list(cases)],
            )
            found = {case: (state, items, pending) for case, state, items, pending in cursor.fetchall()}
            cursor.execute(
                "SELECT count(*) FROM (SELECT e.removal_id FROM requests_app_requestevent e "
                "JOIN requests_app_removalrequest r ON r.id = e.removal_id "
                "WHERE e.action = 'transition' AND r.\"case\" = ANY(%s) "
                "GROUP BY e.removal_id, e.from_state, e.to_state HAVING count(*) > 1) AS twice",
                [list(cases)],
            )
            duplicated_events = cursor.fetchone()[0]
        reviewed_or_later = {"in_review", "approved", "rejected", "published", "withdrawn"}
        return {
            "cases": len(cases),
            "lost": sorted(case for case in cases if case not in found),
            "not_reviewed": sorted(case for case, (state, _, _) in found.items() if state not in reviewed_or_later),
            "items_missing": sorted(case for case, (_, items, _) in found.items() if items != cases[case]),
            "items_pending": sum(pending for _, _, pending in found.values()),
            "duplicated_events": duplicated_events,
        }

    def wait_reviewed(self, cases: dict[str, int], *, timeout: float, sweep_every: float | None = None) -> dict:
        """Wait until every case is in review (or later); returns the final audit."""
        deadline = time.monotonic() + timeout
        next_sweep = time.monotonic() + (sweep_every or 0)
        while True:
            report = self.audit(cases)
            if not report["not_reviewed"] or time.monotonic() > deadline:
                return report
            if sweep_every and time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + sweep_every
            time.sleep(1)


class HealthLog:
    """Polls /healthz twice a second in a thread; ``statuses(between)`` says what it answered when."""

    def __init__(self, stack: Stack, interval: float = 0.5):
        self.stack, self.interval = stack, interval
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="healthz")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            asked = time.monotonic()  # when it was asked: the answer to a broker check takes seconds
            self.seen.append((asked, self.stack.health()))

    def __enter__(self) -> "HealthLog":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def statuses(self, start: float, end: float) -> set[int]:
        return {status for at, status in self.seen if start <= at <= end}

    def last(self) -> int | None:
        return self.seen[-1][1] if self.seen else None

    def summary(self) -> str:
        changes, previous = [], None
        origin = self.seen[0][0] if self.seen else 0
        for at, status in self.seen:
            if status != previous:
                changes.append(f"{at - origin:.1f}s:{status}")
                previous = status
        return " ".join(changes)


def dumps(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


# --- Clients on loopback ------------------------------------------------------------------------


class LoopbackAddresses:
    """Distinct client addresses in 127.0.0.0/8 (Linux answers on all of them), handed out in turn.

    The rate limits count per client address and stay on; a load of many clients
    is many addresses, as it would be from outside.
    """

    def __init__(self, second_octet: int = 1):
        self._next = 0
        self._second = second_octet
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            self._next += 1
            number = self._next
        if number >= 65_000:
            raise RuntimeError("out of loopback addresses")
        return f"127.{self._second}.{number // 250}.{number % 250 + 1}"


def post_json(base_url: str, path: str, body: dict, *, source: str, timeout: float = 30) -> tuple[int, dict]:
    """POST JSON from a given loopback source address; (status, parsed body or {}). Status 0: no answer."""
    import http.client

    url = urlparse(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    except OSError:
        return 0, {}
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw or b"{}")
    except ValueError:
        return response.status, {}
