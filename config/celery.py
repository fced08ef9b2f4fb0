import os
from pathlib import Path

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("optout")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_file_queue_folders(sender, **kwargs) -> None:
    # kombu's file-system transport (the embedded default) expects its folders to exist.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@setup_logging.connect
def _django_logging(**kwargs) -> None:
    # Workers and beat log as the web processes do (settings.LOGGING: DJANGO_LOG_LEVEL, and one JSON
    # object per line with DJANGO_LOG_FORMAT=json) instead of Celery's own format.
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
