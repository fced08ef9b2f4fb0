"""gunicorn's settings, for the Docker image and bench/load: `gunicorn -c config/gunicorn.py config.wsgi`.

The access log leaves out the client address (%h): we keep no raw IP. Every worker counts
its requests for /metrics in a folder they share (prometheus-client's multiprocess mode),
emptied when gunicorn starts.
"""

import os
import tempfile
from pathlib import Path

bind = "0.0.0.0:8000"  # bench/load and the tests pass --bind, which wins
workers = 3
timeout = 60
accesslog = "-"
access_log_format = '%(t)s "%(r)s" %(s)s %(b)s %(M)sms'
# No control socket: it is one path per user, which two gunicorns on a machine would share.
control_socket_disable = True

if os.environ.get("DJANGO_LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "config.jsonlog.JsonFormatter"}},
        "handlers": {
            "error": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "root": {"handlers": ["error"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def on_starting(server):
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="optout-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    # Set before the workers are forked and import prometheus_client.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # A process's first hashing pays about 2 s of lazy set-up (kernels, pdqhash, scipy's FFT): pay it
    # while the worker boots, not in the first upload it serves (bench/load saw it as the p95).
    import io

    from PIL import Image

    from optout.imaging import compute_signals

    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(buffer, "JPEG")
    compute_signals(buffer.getvalue(), max_bytes=1 << 20, max_pixels=1 << 20)
