"""From an approved request to the public feed, and back out by withdrawal."""

import pytest

from optout.blocklist import releases
from requests_app import services
from requests_app.models import RemovalRequest, RequestEvent
from tests.optout.conftest import feed_files, group, keys, lines, manifest, publish, signing_key  # noqa: F401 (fixtures)
from tests.requests_app.builders import in_review, reviewer

pytestmark = pytest.mark.django_db


def snapshot_keys(storage, tier: str, version: int) -> list[str]:
    """The snapshot a manifest names (an unchanged state reuses the previous file)."""
    return keys(storage, tier, manifest(storage, tier, version)["snapshot"]["path"])


def test_an_approved_request_is_published_in_both_tiers_then_marked_published(feed_files, publish):  # noqa: F811 (fixtures imported above)
    removal = in_review(["match_strong", "no_match"])
    blocked, unmatched = removal.items.order_by("id")
    services.approve_removal(removal, reviewer=reviewer())

    release = publish()

    assert keys(feed_files, "partner", releases.snapshot_name(release.version)) == [blocked.url_sha256]
    assert keys(feed_files, "public", releases.snapshot_name(release.version)) == group(blocked.url_sha256)
    public = lines(feed_files, "public", releases.snapshot_name(release.version))
    assert {frozenset(line) for line in public} == {frozenset({"key", "op", "url_sha256", "sha256"})}
    assert [line["sha256"] for line in public if line["sha256"]] == [blocked.image_sha256]
    assert unmatched.url_sha256 not in str(lines(feed_files, "partner", releases.snapshot_name(release.version)))
    stored = RemovalRequest.objects.get(pk=removal.pk)
    assert stored.state == "published"
    event = RequestEvent.objects.filter(removal=removal).latest("id")
    assert (event.to_state, event.actor_label) == ("published", "system")
    assert str(release.version) in event.reason


def test_withdrawal_after_publication_puts_a_tombstone_in_the_next_release(feed_files, publish):  # noqa: F811 (fixtures imported above)
    removal = in_review(["match_strong"])
    services.approve_removal(removal, reviewer=reviewer())
    publish()
    removal.refresh_from_db()
    services.withdraw_removal(removal)

    release = publish()

    item = removal.items.get()
    for tier, removed in (("partner", [item.url_sha256]), ("public", group(item.url_sha256))):
        assert lines(feed_files, tier, releases.delta_name(release.version)) == [
            {"key": key, "op": "remove", "url_sha256": key} for key in removed
        ]
        assert keys(feed_files, tier, releases.snapshot_name(release.version)) == []


def test_two_requests_for_one_url_keep_it_blocked_until_both_let_go(feed_files, publish):  # noqa: F811 (fixtures imported above)
    first = in_review(["match_strong"])
    second = in_review(["match_strong"])
    rita = reviewer()
    services.approve_removal(first, reviewer=rita)
    services.approve_removal(second, reviewer=rita)
    url = first.items.get().url_sha256
    assert second.items.get().url_sha256 == url
    publish()
    first.refresh_from_db()
    services.withdraw_removal(first)
    release = publish()
    assert snapshot_keys(feed_files, "partner", release.version) == [url]
    assert snapshot_keys(feed_files, "public", release.version) == group(url)
    assert RemovalRequest.objects.get(pk=second.pk).state == "published"
