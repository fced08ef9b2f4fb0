import json
import os
import subprocess
import sys
from pathlib import Path

from config.celery import app

ROOT = Path(__file__).resolve().parent.parent


def test_celery_is_json_only_and_acks_late():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_time_limits_are_set_and_soft_comes_first():
    assert app.conf.task_time_limit > 0
    assert 0 < app.conf.task_soft_time_limit < app.conf.task_time_limit


def test_redis_visibility_timeout_exceeds_the_hard_time_limit():
    # Settings are read once per process: look at the Redis branch in a fresh one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update({"REDIS_URL": "redis://127.0.0.1:6379/9", "CELERY_TASK_TIME_LIMIT": "900"})
    code = (
        "import json; from config.celery import app; c = app.conf; "
        "print(json.dumps([c.broker_url, c.broker_transport_options, c.task_time_limit]))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    broker, options, hard_limit = json.loads(result.stdout)
    assert broker.startswith("redis://")
    assert hard_limit == 900
    assert options["visibility_timeout"] > hard_limit


def test_heartbeat_is_scheduled_by_beat():
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "optout.tasks.record_heartbeat" in tasks
