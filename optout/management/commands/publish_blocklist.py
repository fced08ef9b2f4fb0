from django.core.management.base import BaseCommand, CommandError

from optout.blocklist import releases


class Command(BaseCommand):
    help = (
        "Publish the next blocklist release: a snapshot and a delta of both tiers, and signed manifests. "
        "Always makes a new release (re-signing an unchanged state with a fresh expiry)."
    )

    def handle(self, *args, **options):
        try:
            release = releases.publish_release()
        except releases.PublishError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Published release {release.version}: {release.entries} entries "
            f"(+{release.added} -{release.removed}), expires {releases.iso(release.expires_at)}, key {release.key_id}."
        )
