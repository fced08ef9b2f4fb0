"""PostgreSQL and Redis for the load harness: a server already running (a database of our own
is created and dropped) or instances started from a temporary folder with Debian's binaries,
which can be restarted without touching anybody else's. 127.0.0.1 only."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg2

from bench.load.processes import port_open, wait_until

# --- PostgreSQL -------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"no {name} under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return found[-1]


class _Restartable:
    """Restart for a server of ours that has ``start`` and ``stop``, as a fault scenario does it."""

    def restart(self, *, down_for: float) -> tuple[float, float]:
        """Stop (ending every connection, as a restart does), stay down, start. Returns (down at, up at)."""
        self.stop()
        down = time.monotonic()
        time.sleep(down_for)
        self.start()
        return down, time.monotonic()


class OwnPostgres(_Restartable):
    """A PostgreSQL instance of our own, in a fresh temporary data folder, on 127.0.0.1:port.

    PostgreSQL refuses to run as root: as root, the folder is given to the ``postgres`` user
    and its commands run as that user (``runuser``).
    """

    def __init__(self, *, port: int):
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="optout-pg-"))
        self.data = self.folder / "data"
        self._as = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "postgres.log")]
            + ["-w", "-t", "60", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        if not self.data.exists():
            subprocess.run(
                [*self._as, _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
                + ["--no-sync"],
                check=True,
                capture_output=True,
            )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._ctl("-o", options, "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str) -> str:
        _create_database(self.url("postgres"), name)
        return self.url(name)


def _create_database(server_url: str, name: str) -> None:
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(server_url: str, name: str) -> None:
    conn = psycopg2.connect(server_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class SharedPostgres:
    """A database of our own on a PostgreSQL server that is already running (never restarted here)."""

    def __init__(self, server_url: str):
        self.server_url = server_url

    def create_database(self, name: str) -> str:
        _create_database(self.server_url, name)
        return urlparse(self.server_url)._replace(path=f"/{name}").geturl()

    def start(self) -> None:
        pass

    def remove(self) -> None:
        pass


# --- Redis ----------------------------------------------------------------------------


class OwnRedis(_Restartable):
    """A redis-server of our own on 127.0.0.1:port, persisting to an append-only file as compose.yaml's does."""

    def __init__(self, folder: Path, *, port: int):
        self.folder = Path(folder)
        self.port = port
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (kept open for the process's lifetime)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
            + ["--appendonly", "yes", "--save", "", "--protected-mode", "yes"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: port_open(self.port), timeout=20, what=f"redis on port {self.port}")

    def stop(self) -> None:
        if self.process is None:
            return
        # SHUTDOWN flushes the append-only file, as `docker compose restart redis` would.
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=20)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
