import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_settings(extra_env: dict[str, str], expression: str = "None") -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with the given environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "OPTOUT_", "CELERY_", "DATABASE_URL", "REDIS_URL", "AWS_"))
    }
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "OPTOUT_VAR_DIR": "var/test"})
    env.update(extra_env)
    code = f"import json; from django.conf import settings as s; s.SECRET_KEY; print(json.dumps({expression}, default=str))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


KEY = {"DJANGO_SECRET_KEY": "x" * 60}


def test_debug_is_off_by_default():
    result = run_settings(KEY, "s.DEBUG")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is False


def test_missing_secret_key_fails_loudly(tmp_path):
    result = run_settings({"DJANGO_SECRET_KEY_FILE": str(tmp_path / "absent")})
    assert result.returncode != 0
    assert "No secret key" in result.stderr


def test_secret_key_is_read_from_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("k" * 55 + "\n")
    result = run_settings({"DJANGO_SECRET_KEY_FILE": str(key_file)}, "s.SECRET_KEY")
    assert json.loads(result.stdout) == "k" * 55


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DJANGO_DEBUG", "ture", "is not a boolean"),
        ("OPTOUT_FETCH_TIMEOUT", "ten", "is not an integer"),
        ("OPTOUT_PHASH_THRESHOLD", "40", "above the maximum"),
        ("OPTOUT_ADMIN_PATH", "../admin", "must look like"),
        ("DATABASE_URL", "nosuchdb://x", "DATABASE_URL"),
    ],
)
def test_bad_values_stop_start_up(name, value, message):
    result = run_settings({**KEY, name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_https_switch_turns_on_secure_cookies_and_hsts():
    result = run_settings(
        {**KEY, "DJANGO_HTTPS": "1"},
        "[s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS]",
    )
    assert json.loads(result.stdout) == [True, True, True, 31_536_000]


def test_embedded_defaults_need_no_server():
    result = run_settings(
        KEY,
        "[s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND'], s.STORAGES['default']['BACKEND']]",
    )
    engine, broker, cache, storage = json.loads(result.stdout)
    assert engine == "django.db.backends.sqlite3"
    assert broker == "filesystem://"
    assert cache.endswith("FileBasedCache")
    assert storage == "django.core.files.storage.FileSystemStorage"


def test_service_urls_switch_to_postgres_redis_and_s3():
    result = run_settings(
        {
            **KEY,
            "DATABASE_URL": "postgres://u@db:5432/optout",
            "REDIS_URL": "redis://cache:6379/0",
            "AWS_STORAGE_BUCKET_NAME": "releases",
        },
        "[s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND'], s.STORAGES['default']['BACKEND']]",
    )
    assert json.loads(result.stdout) == [
        "django.db.backends.postgresql",
        "redis://cache:6379/0",
        "django.core.cache.backends.redis.RedisCache",
        "storages.backends.s3.S3Storage",
    ]


def _settings_variables() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z0-9_]+)"', source))


def _example_variables() -> set[str]:
    names = set()
    for line in (ROOT / "docker" / ".env.example").read_text().splitlines():
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]+)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_env_example_lists_exactly_the_variables_settings_read():
    read = _settings_variables()
    assert len(read) > 20
    compose_only = {"POSTGRES_PASSWORD"}  # read by compose.yaml, not by Django
    assert _example_variables() - compose_only == read


def test_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in _settings_variables() if f"`{name}`" not in readme)
    assert missing == []
