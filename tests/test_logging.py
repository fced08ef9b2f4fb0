"""JSON logs: one object per line, and no secret, requester hash or client address in them."""

import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.jsonlog import JsonFormatter
from optout.imaging import compute_signals
from tests import images
from tests.test_outages import REDIS_DOWN

CLIENT_ADDRESS = "203.0.113.77"


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_record_is_one_line_of_json_with_its_exception():
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord("optout.x", logging.ERROR, __file__, 1, "failed %s", ("here",), exc_info=True)
        record.exc_info = __import__("sys").exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "optout.x" and entry["message"] == "failed here"
    assert "ValueError: first\nsecond" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_the_http_request_django_attaches_is_left_out():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/x",), None)
    record.request = type("R", (), {"META": {"REMOTE_ADDR": CLIENT_ADDRESS}})()
    record.status_code = 404
    assert set(json.loads(JsonFormatter().format(record))) == {"time", "level", "logger", "message"}


@pytest.mark.django_db
def test_a_requesters_path_logs_no_secret_hash_or_address(client, settings, json_log):
    photo = images.photo_jpeg()
    signals = compute_signals(photo, max_bytes=1 << 24, max_pixels=1 << 26).to_dict()
    meta = {"REMOTE_ADDR": CLIENT_ADDRESS}
    created = client.post(
        "/api/v1/requests/",
        {"urls": ["https://images.example.org/private.jpg"], "signals": [signals]},
        content_type="application/json",
        **meta,
    )
    assert created.status_code == 201
    case, secret = created.json()["case"], created.json()["secret"]
    wrong = client.post(
        "/api/v1/requests/status/", {"case": case, "secret": secret[::-1]}, content_type="application/json", **meta
    )
    assert wrong.status_code == 404
    bad = client.post("/api/v1/requests/", {"urls": ["file:///etc/passwd"]}, content_type="application/json", **meta)
    assert bad.status_code == 400
    assert client.get("/feed/v1/public/manifest.json", **meta).status_code == 404
    settings.CACHES = REDIS_DOWN
    down = client.post(
        "/api/v1/requests/status/", {"case": case, "secret": secret}, content_type="application/json", **meta
    )
    assert down.status_code == 503

    lines = json_log.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert any(entry["message"].startswith("service unavailable") for entry in entries)
    assert any(entry["logger"] == "django.request" for entry in entries)
    text = json_log.getvalue()
    for private in (secret, CLIENT_ADDRESS, signals["sha256"], signals["phash"], signals["pdq"]):
        assert private not in text


def test_a_celery_worker_logs_json_lines_too(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "REDIS_"))}
    # PYTHONWARNINGS: Python's own start-up warnings (a worker run as root) come before any logging.
    env |= {"DJANGO_LOG_FORMAT": "json", "OPTOUT_VAR_DIR": str(tmp_path), "REDIS_URL": "", "PYTHONWARNINGS": "ignore"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--without-mingle"]
            + ["--without-gossip", "--hostname=jsonlog@localhost"],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=subprocess.DEVNULL,  # the start-up banner is not a log
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 120
            while b"ready" not in log_path.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(entry["logger"].startswith("celery") and "ready" in entry["message"] for entry in entries)
