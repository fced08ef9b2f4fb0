"""requests_app's answers to events of other apps (connected in RequestsAppConfig.ready)."""

import logging

from django.db import transaction
from django.dispatch import receiver

from optout.blocklist.events import release_published
from optout.index.events import rows_gained_signals
from requests_app import monitoring, services

log = logging.getLogger(__name__)


@receiver(release_published, dispatch_uid="requests_app.publish_requests")
def publish_requests(sender, *, release, newest_hold, **kwargs) -> None:
    """Approved requests whose blocked items are all in the new release become `published`."""
    services.mark_published(release_version=release.version, newest_hold=newest_hold)


@receiver(rows_gained_signals, dispatch_uid="requests_app.scan_new_rows")
def scan_new_rows(sender, *, dataset_id, hashed=False, **kwargs) -> None:
    """Rows of a dataset gained signals: queue the monitoring scan once they have committed.

    Rows a worker hashed are left to settle first (see monitoring.HASHED_SETTLE). A broker failure
    loses nothing: the monitoring sweeper finds rows past the marks."""
    from requests_app.tasks import scan_new_rows as task

    countdown = int(monitoring.HASHED_SETTLE.total_seconds()) + 1 if hashed else 0

    def send() -> None:
        try:
            task.apply_async((dataset_id,), countdown=countdown)
        except Exception:  # noqa: BLE001 (any broker failure)
            log.warning("could not enqueue the monitoring scan of dataset %s; the sweeper will", dataset_id)

    transaction.on_commit(send)
