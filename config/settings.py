"""Settings: one module, driven by environment variables.

Every variable read here is listed in ``docker/.env.example`` and in the README
(a test keeps the three in step). Defaults are the embedded, server-less set-up
that ``make run`` uses: SQLite and a file-system Celery broker under ``var/``,
local file storage, console e-mail. Defaults are safe: ``DEBUG`` is off, there
is no committed secret, and HTTPS hardening switches on with ``DJANGO_HTTPS``.
"""

import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state of the embedded set-up (SQLite file, broker queue, cache, keys).
VAR_DIR = BASE_DIR / env_str("OPTOUT_VAR_DIR", "var")  # an absolute value replaces BASE_DIR

# --- Core -----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)


def _read_secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if not key:
        key_file = Path(env_str("DJANGO_SECRET_KEY_FILE", str(VAR_DIR / "secret_key")))
        if key_file.is_file():
            key = key_file.read_text().strip()
    if not key:
        raise ImproperlyConfigured(
            "No secret key: set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE). "
            "`make run` generates one into var/secret_key on first start."
        )
    return key


SECRET_KEY = _read_secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "optout",
    "requests_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.metrics.RequestCountMiddleware",
    "config.outages.ServiceUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    DATABASES = {
        # Health checks: a kept-open connection that a PostgreSQL restart broke is noticed and
        # replaced at the start of the next request or task, instead of failing it.
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DJANGO_DB_CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that is down answers 503 within seconds (config/outages.py) instead of hanging a worker.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share one SQLite file: wait for
    # locks instead of failing, and take the write lock up front.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits) and Celery ----------------------------------------------

REDIS_URL = env_str("REDIS_URL") or ""
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Redis down or restarting: fail fast (a 503) rather than hold a web worker.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
else:
    # A file cache is shared by every local process, which rate limits need.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30 if CELERY_TASK_TIME_LIMIT > 60 else CELERY_TASK_TIME_LIMIT - 5
# A message is redelivered if not acknowledged within the visibility timeout;
# with acks_late it must exceed the hard time limit, or a long task would run twice.
CELERY_VISIBILITY_TIMEOUT = max(env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60), CELERY_TASK_TIME_LIMIT * 2)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,  # above the 1 s blocking pop kombu's Redis transport uses
    }
# Publishing a task retries through a broker restart (a few tries, about 2 s in all), then gives up: the
# caller logs it and the sweeper re-queues from PostgreSQL, so a request is never held up for long.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.4, "interval_max": 1.0}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # results live in PostgreSQL, not in a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "optout.tasks.record_heartbeat", "schedule": 60.0},
    "sweep-stuck-requests": {"task": "requests_app.tasks.sweep_stuck_requests", "schedule": 60.0},
}

# --- Storage ----------------------------------------------------------------

MEDIA_ROOT = env_str("DJANGO_MEDIA_ROOT", str(VAR_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve /static/ without collectstatic in the embedded set-up

AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME") or ""
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": False,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": MEDIA_ROOT}}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- E-mail -----------------------------------------------------------------

EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "optout@localhost")

# --- Security ---------------------------------------------------------------

HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000, minimum=0) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
DJANGO_BEHIND_PROXY = env_bool("DJANGO_BEHIND_PROXY", False)
if DJANGO_BEHIND_PROXY:
    # Only behind a proxy that sets this header itself; otherwise clients could spoof HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front of the app append to X-Forwarded-For (optout/feed/throttling.py): the
# client's address is that many entries from the end. 0: X-Forwarded-For is ignored.
DJANGO_TRUSTED_PROXY_HOPS = env_int("DJANGO_TRUSTED_PROXY_HOPS", 1 if DJANGO_BEHIND_PROXY else 0, minimum=0, maximum=10)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600
DATA_UPLOAD_MAX_NUMBER_FILES = 10  # the intake takes at most 5; more is refused before parsing
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)
# Uploaded reference images must never touch the disk: keep every upload in
# memory (the per-file and total caps are enforced by the intake code).
FILE_UPLOAD_HANDLERS = ["requests_app.uploads.InMemoryOnlyUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("OPTOUT_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024)

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

ADMIN_PATH = env_str("OPTOUT_ADMIN_PATH", "admin/")
if not re.fullmatch(r"([A-Za-z0-9_-]+/)+", ADMIN_PATH):
    raise ImproperlyConfigured(
        f"OPTOUT_ADMIN_PATH={ADMIN_PATH!r} must look like 'some-path/' (letters, digits, - and _)"
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation ---------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- API ----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON nested too deep for the decoder is a 400 (config/parsers.py), never a 500.
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "requests_app.api.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Opt-out and removal requests",
    "DESCRIPTION": "Anonymous removal requests for images in scraped training sets, and the blocklist dataset builders apply.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed sidecar package: no CDN, nothing for CSP to allow.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RemovalStateEnum": "requests_app.models.RemovalState",
        "ItemStateEnum": "requests_app.models.ItemState",
    },
}

# --- The product ------------------------------------------------------------------

# Where this site is reached from outside; used for links the site builds for
# itself (the demo dataset's image URLs).
OPTOUT_PUBLIC_URL = env_str("OPTOUT_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Loopback fetches are for the demo and the tests only; `check --deploy` warns when on.
OPTOUT_FETCH_ALLOW_LOOPBACK = env_bool("OPTOUT_FETCH_ALLOW_LOOPBACK", False)
OPTOUT_FETCH_TIMEOUT = env_int("OPTOUT_FETCH_TIMEOUT", 15, minimum=1, maximum=120)
OPTOUT_MAX_IMAGE_BYTES = env_int("OPTOUT_MAX_IMAGE_BYTES", 20 * 1024 * 1024, minimum=1024)
OPTOUT_MAX_IMAGE_PIXELS = env_int("OPTOUT_MAX_IMAGE_PIXELS", 50_000_000, minimum=1024)
# Hamming-distance thresholds per hash family. PDQ's 31 is the value Meta
# recommends for its 256-bit hash; pHash's 8 of 64 bits is the usual near-duplicate cut.
OPTOUT_PHASH_THRESHOLD = env_int("OPTOUT_PHASH_THRESHOLD", 8, minimum=0, maximum=12)
OPTOUT_PDQ_THRESHOLD = env_int("OPTOUT_PDQ_THRESHOLD", 31, minimum=0, maximum=32)
# The review band: a PDQ distance above the threshold and at most this makes a comparison "weak"
# (never "strong"), so that reviewers see near misses. bench/match_quality.py measures its cost.
OPTOUT_PDQ_REVIEW_THRESHOLD = env_int("OPTOUT_PDQ_REVIEW_THRESHOLD", 50, minimum=0, maximum=64)
if OPTOUT_PDQ_REVIEW_THRESHOLD < OPTOUT_PDQ_THRESHOLD:
    raise ImproperlyConfigured("OPTOUT_PDQ_REVIEW_THRESHOLD must be at least OPTOUT_PDQ_THRESHOLD")

# --- Blocklist releases and the feed (optout/blocklist/releases.py, optout/feed/) ---
# The minisign secret key that signs releases; never in the repository or the
# database. `python manage.py generate_signing_key` writes it (and a .pub beside it).
OPTOUT_SIGNING_KEY_FILE = env_str("OPTOUT_SIGNING_KEY_FILE", str(VAR_DIR / "minisign.key"))
OPTOUT_SIGNING_KEY_PASSWORD_FILE = env_str("OPTOUT_SIGNING_KEY_PASSWORD_FILE", "")
# Key rotation: the next public key, announced in every manifest until it takes over.
OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE = env_str("OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE", "")
OPTOUT_FEED_NAME = env_str("OPTOUT_FEED_NAME", "optout")
if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,60}", OPTOUT_FEED_NAME):
    raise ImproperlyConfigured(f"OPTOUT_FEED_NAME={OPTOUT_FEED_NAME!r} must be lower-case letters, digits, '.' and '-'")
# A release expires this long after it is made; builders' clients refuse an expired one.
OPTOUT_RELEASE_TTL_HOURS = env_int("OPTOUT_RELEASE_TTL_HOURS", 48, minimum=1, maximum=24 * 30)
# Celery beat publishes a release this often, re-signing the state even when nothing changed.
OPTOUT_PUBLISH_INTERVAL_MINUTES = env_int("OPTOUT_PUBLISH_INTERVAL_MINUTES", 60, minimum=1)
if OPTOUT_PUBLISH_INTERVAL_MINUTES * 2 > OPTOUT_RELEASE_TTL_HOURS * 60:
    raise ImproperlyConfigured("OPTOUT_PUBLISH_INTERVAL_MINUTES must be at most half of OPTOUT_RELEASE_TTL_HOURS")
# Partner-tier requests per token per hour, and blocklist lookups per client per hour.
OPTOUT_PARTNER_REQUESTS_PER_HOUR = env_int("OPTOUT_PARTNER_REQUESTS_PER_HOUR", 600, minimum=1)
OPTOUT_LOOKUP_REQUESTS_PER_HOUR = env_int("OPTOUT_LOOKUP_REQUESTS_PER_HOUR", 120, minimum=1)
# Every public URL key is published among this many decoy keys (optout/blocklist/decoys.py): real
# rows of the same dataset and host. At least 1: a lone real key would name the picture.
OPTOUT_PUBLIC_DECOYS = env_int("OPTOUT_PUBLIC_DECOYS", 9, minimum=1, maximum=99)
CELERY_BEAT_SCHEDULE["publish-blocklist"] = {
    "task": "optout.tasks.publish_blocklist",
    "schedule": OPTOUT_PUBLISH_INTERVAL_MINUTES * 60.0,
}

# Nothing lost: a request still `checking` past this many seconds is queued again by the sweeper,
# one still `received` after the grace period too (its message may never have reached the broker),
# and an item whose verification failed (or crashed) this many times is marked unreachable.
OPTOUT_CHECK_DEADLINE_SECONDS = env_int("OPTOUT_CHECK_DEADLINE_SECONDS", 900, minimum=5)
OPTOUT_RECEIVED_GRACE_SECONDS = env_int("OPTOUT_RECEIVED_GRACE_SECONDS", 120, minimum=0)
OPTOUT_VERIFY_MAX_ATTEMPTS = env_int("OPTOUT_VERIFY_MAX_ATTEMPTS", 3, minimum=1, maximum=20)

# After a decision: a rejected case can be appealed once within this many days; the monitoring
# sweeper matches rows that gained signals (and ends expired monitoring) this often.
OPTOUT_APPEAL_WINDOW_DAYS = env_int("OPTOUT_APPEAL_WINDOW_DAYS", 30, minimum=1, maximum=365)
OPTOUT_MONITOR_SWEEP_MINUTES = env_int("OPTOUT_MONITOR_SWEEP_MINUTES", 10, minimum=1)
CELERY_BEAT_SCHEDULE["sweep-monitoring"] = {
    "task": "requests_app.tasks.sweep_monitoring",
    "schedule": OPTOUT_MONITOR_SWEEP_MINUTES * 60.0,
}

# Retention (requests_app/retention.py): a rejected or published case keeps its reference signals for
# the appeal window (unless monitored); a closed case is cut down to its audit trail after this long.
OPTOUT_RETENTION_DAYS = env_int("OPTOUT_RETENTION_DAYS", 180, minimum=1)
# New removal requests accepted per hour from everyone together: a flood from many networks at once.
OPTOUT_MAX_NEW_REQUESTS_PER_HOUR = env_int("OPTOUT_MAX_NEW_REQUESTS_PER_HOUR", 500, minimum=1)
CELERY_BEAT_SCHEDULE["purge-closed-cases"] = {"task": "requests_app.tasks.purge_closed_cases", "schedule": 86400.0}

# --- Operations: logs and metrics ---------------------------------------------------

# `json`: one JSON object per line (config/jsonlog.py), for a log shipper; gunicorn's own logs follow.
LOG_FORMAT = env_str("DJANGO_LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT={LOG_FORMAT!r} must be 'plain' or 'json'")
# GET /metrics (Prometheus) answers staff users, and anyone sending `Authorization: Bearer <this>`.
OPTOUT_METRICS_TOKEN = env_str("OPTOUT_METRICS_TOKEN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.jsonlog.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.security.DisallowedHost": {"level": "ERROR"}},
}
