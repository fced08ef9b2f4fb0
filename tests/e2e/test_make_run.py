"""`make run` (bin/run): a chosen port, checked before anything starts, and "Serving on" only once it answers.

These run the real script, with its state in a temporary OPTOUT_VAR_DIR, on SQLite and the file broker.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The script must run on its embedded defaults, whatever services the test run itself uses.
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "OPTOUT_PUBLIC_URL")


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in SERVICE_VARIABLES}
    env.update(PORT=str(port), OPTOUT_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            ["bin/run"], cwd=ROOT, env=_env(tmp_path, port), capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert f"Port {port} on 127.0.0.1 is in use" in done.stderr
    assert "PORT=8001 make run" in done.stderr
    assert "Serving on" not in done.stdout
    assert not (tmp_path / "var").exists()  # nothing was started or created


def test_a_port_that_is_not_a_number_is_refused(tmp_path):
    env = _env(tmp_path, 8000)
    env["PORT"] = "eighty"
    done = subprocess.run(["bin/run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "PORT=eighty is not a port number" in done.stderr


def test_serving_is_announced_only_once_the_server_answers_on_the_chosen_port(tmp_path):
    port = _free_port()
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["bin/run"],
            cwd=ROOT,
            env=_env(tmp_path, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Serving on" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        assert f"Serving on http://127.0.0.1:{port}/ (admin: http://127.0.0.1:{port}/admin/)" in text, text
        # Announced means answering, at once.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert answer.status == 200
        # The demo's links point to this port, so its flow works here.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/demo/", timeout=5) as demo:
            assert f"http://127.0.0.1:{port}/demo/images/" in demo.read().decode()
        assert text.count("Serving on") == 1
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
