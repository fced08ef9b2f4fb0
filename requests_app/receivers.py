"""requests_app's answers to events of other apps (connected in RequestsAppConfig.ready)."""

from django.dispatch import receiver

from optout.blocklist.events import release_published
from requests_app import services


@receiver(release_published, dispatch_uid="requests_app.publish_requests")
def publish_requests(sender, *, release, holders, **kwargs) -> None:
    """Approved requests whose blocked items are all in the new release become `published`."""
    services.mark_published_for_holders(holders, release_version=release.version)
