import gzip
import hashlib
import logging
import subprocess
import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from optout.blocklist import events, holds, releases, signing
from optout.client.canonical import url_sha256
from optout.models import Release
from tests.optout.blocklist.test_signing import MINISIGN, needs_minisign
from tests.optout.conftest import group, keys, lines, manifest, read_bytes

pytestmark = pytest.mark.django_db

URL_A = url_sha256("https://images.example.org/private/a.jpg")
URL_B = url_sha256("https://images.example.org/private/b.jpg")
SHA_A = "aa" * 32
PHASH = 0x8000_0000_0000_0001
PDQ = (1 << 255) | 5


def test_an_approved_item_is_in_the_next_release_of_both_tiers(feed_files, signing_key, publish):
    holds.hold(holder="item:1", url_sha256=URL_A, image_sha256=SHA_A, phash=PHASH, pdq=PDQ, pdq_quality=90)
    release = publish()
    assert release.version == 1
    public = lines(feed_files, "public", releases.snapshot_name(1))
    partner = lines(feed_files, "partner", releases.snapshot_name(1))
    members = group(URL_A)
    assert len(members) == 10  # OPTOUT_PUBLIC_DECOYS=9 decoys beside the real key
    # The image sha256 sits on the group's smallest key, whichever member is real.
    assert public == [
        {"key": key, "op": "add", "url_sha256": key, "sha256": SHA_A if key == members[0] else None} for key in members
    ]
    assert partner == [
        {
            "key": URL_A,
            "op": "add",
            "url_sha256": URL_A,
            "sha256": SHA_A,
            "phash": "8000000000000001",
            "pdq": f"{PDQ:064x}",
            "pdq_quality": 90,
        }
    ]
    assert lines(feed_files, "public", releases.delta_name(1)) == public


def test_public_tier_never_carries_a_raw_url_or_a_perceptual_hash(feed_files, signing_key, publish):
    url = "https://images.example.org/private/a.jpg"
    holds.hold(holder="item:1", url_sha256=url_sha256(url), image_sha256=SHA_A, phash=PHASH, pdq=PDQ, pdq_quality=90)
    publish()
    for name in (releases.snapshot_name(1), releases.delta_name(1), releases.manifest_name(1)):
        raw = read_bytes(feed_files, "public", name)
        text = (raw if name.endswith(".json") else gzip.decompress(raw)).decode()
        assert "example.org" not in text
        assert "phash" not in text and "pdq" not in text
        assert "8000000000000001" not in text and f"{PDQ:064x}" not in text
    assert "phash" in read_bytes(feed_files, "partner", releases.manifest_name(1)).decode()


def test_withdrawal_produces_a_tombstone_and_leaves_the_snapshot(feed_files, signing_key, publish):
    holds.hold(holder="item:1", url_sha256=URL_A, image_sha256=SHA_A)
    holds.hold(holder="item:2", url_sha256=URL_B)
    publish()
    holds.release_hold(holder="item:1")
    holds.release_hold(holder="item:1")  # idempotent
    release = publish()
    assert lines(feed_files, "partner", releases.delta_name(2)) == [{"key": URL_A, "op": "remove", "url_sha256": URL_A}]
    assert keys(feed_files, "partner", releases.snapshot_name(2)) == [URL_B]
    assert lines(feed_files, "public", releases.delta_name(2)) == [
        {"key": key, "op": "remove", "url_sha256": key} for key in group(URL_A)
    ]
    assert keys(feed_files, "public", releases.snapshot_name(2)) == group(URL_B)
    assert (release.entries, release.added, release.removed) == (1, 0, 1)
    assert release.state_sha256 == hashlib.sha256(f"{URL_B}\n".encode()).hexdigest()


def test_a_hold_released_before_any_release_leaves_no_trace(feed_files, signing_key, publish):
    holds.hold(holder="item:1", url_sha256=URL_A)
    holds.release_hold(holder="item:1")
    release = publish()
    assert release.entries == 0
    assert lines(feed_files, "public", releases.delta_name(1)) == []


def test_sorted_snapshot_and_state_hash(feed_files, signing_key, publish):
    keys = sorted(url_sha256(f"https://example.com/{i}.jpg") for i in range(20))
    for i, key in enumerate(reversed(keys)):
        holds.hold(holder=f"item:{i}", url_sha256=key)
    release = publish()
    assert [line["key"] for line in lines(feed_files, "partner", releases.snapshot_name(1))] == keys
    expected = hashlib.sha256("".join(key + "\n" for key in keys).encode()).hexdigest()
    assert release.state_sha256 == expected
    assert manifest(feed_files, "partner", 1)["state_sha256"] == expected
    public = sorted(member for key in keys for member in group(key))
    assert [line["key"] for line in lines(feed_files, "public", releases.snapshot_name(1))] == public
    assert (
        manifest(feed_files, "public", 1)["state_sha256"]
        == hashlib.sha256("".join(key + "\n" for key in public).encode()).hexdigest()
    )


def test_manifests_chain_and_unchanged_state_is_resigned(feed_files, signing_key, settings, publish):
    holds.hold(holder="item:1", url_sha256=URL_A)
    first = publish()
    second = publish()
    for tier in releases.TIERS:
        one, two = manifest(feed_files, tier, 1), manifest(feed_files, tier, 2)
        assert one["previous"] is None
        assert two["previous"] == {
            "version": 1,
            "sha256": hashlib.sha256(read_bytes(feed_files, tier, releases.manifest_name(1))).hexdigest(),
        }
        assert two["snapshot"] == one["snapshot"]  # nothing changed: the same file
        assert two["delta"]["from"] == 1 and two["delta"]["added"] == two["delta"]["removed"] == 0
        assert two["expires"] == releases.iso(second.created_at + timedelta(hours=settings.OPTOUT_RELEASE_TTL_HOURS))
        assert two["feed"] == f"optout-{tier}"
    assert second.expires_at >= first.expires_at


def test_the_log_says_what_each_part_of_a_release_took(feed_files, signing_key, publish, caplog):
    holds.hold(holder="item:1", url_sha256=URL_A)
    with caplog.at_level(logging.INFO, logger="optout.blocklist.releases"):
        first, second = publish(), publish()
    assert list(first.phases) == ["decoys drawn", "public snapshot", "partner snapshot", "manifests"]
    assert list(second.phases) == [
        "decoys drawn", "public delta", "public snapshot", "partner delta", "partner snapshot", "manifests"
    ]  # fmt: skip
    assert all(seconds >= 0 for seconds in second.phases.values())
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Published")]
    assert len(said) == 2 and ", public snapshot " in said[1] and said[1].endswith(" s)")


@needs_minisign
def test_stock_minisign_verifies_the_manifest(tmp_path, feed_files, signing_key, publish):
    holds.hold(holder="item:1", url_sha256=URL_A)
    publish()
    body = read_bytes(feed_files, "public", releases.manifest_name(1))
    (tmp_path / "manifest.json").write_bytes(body)
    (tmp_path / "manifest.json.minisig").write_bytes(read_bytes(feed_files, "public", "manifest.json.minisig"))
    result = subprocess.run(
        [
            MINISIGN,
            "-V",
            "-P",
            signing_key.public_key.to_base64(),
            "-m",
            "manifest.json",
            "-x",
            "manifest.json.minisig",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    data = manifest(feed_files, "public", 1)
    assert f"Trusted comment: feed:optout-public version:1 expires:{data['expires']}" in result.stdout
    (tmp_path / "manifest.json").write_bytes(body.replace(b'"version":1', b'"version":2'))
    assert (
        subprocess.run(
            [MINISIGN, "-V", "-P", signing_key.public_key.to_base64(), "-m", "manifest.json"],
            cwd=tmp_path,
            capture_output=True,
        ).returncode
        != 0
    )


def test_manifest_announces_the_next_key(feed_files, signing_key, settings, tmp_path, publish):
    upcoming = signing.generate().public_key
    (tmp_path / "next.pub").write_text(upcoming.to_file())
    settings.OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE = str(tmp_path / "next.pub")
    publish()
    body = read_bytes(feed_files, "partner", releases.manifest_name(1))
    signature = read_bytes(feed_files, "partner", releases.manifest_name(1) + ".minisig").decode()
    signing.verify(body, signature, signing_key.public_key)
    assert manifest(feed_files, "partner", 1)["next_key"] == {
        "key_id": upcoming.key_id_hex,
        "public_key": upcoming.to_base64(),
    }


def test_publishing_without_a_key_fails_clearly(feed_files, settings, tmp_path):
    settings.OPTOUT_SIGNING_KEY_FILE = str(tmp_path / "absent.key")
    with pytest.raises(releases.PublishError, match="generate_signing_key"):
        releases.publish_release(storage=feed_files)
    assert not Release.objects.exists()


def test_release_published_is_sent_after_commit_with_the_holds_it_carries(
    feed_files, signing_key, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender, release, newest_hold, **kwargs):
        received.append((release.version, holds.held_in({"item:1", "item:2", "item:3"}, newest=newest_hold)))

    events.release_published.connect(receiver)
    try:
        holds.hold(holder="item:1", url_sha256=URL_A)
        holds.hold(holder="item:2", url_sha256=URL_B)
        holds.release_hold(holder="item:2")
        with django_capture_on_commit_callbacks() as callbacks:
            releases.publish_release(storage=feed_files)
        assert received == []  # nothing before the commit
        holds.hold(holder="item:3", url_sha256=URL_B)  # after the release: not in it
        for callback in callbacks:
            callback()
    finally:
        events.release_published.disconnect(receiver)
    assert received == [(1, {"item:1"})]


def test_the_database_refuses_duplicate_or_skipped_versions(feed_files, signing_key, publish):
    first = publish()
    fields = {
        "created_at": timezone.now(),
        "expires_at": timezone.now(),
        "entries": 0,
        "added": 0,
        "removed": 0,
        "state_sha256": "",
        "key_id": "",
        "public_key": "",
        "tiers": {},
    }
    for version, previous in [(1, None), (3, first), (2, None), (5, None)]:
        with pytest.raises(IntegrityError), transaction.atomic():
            Release.objects.create(version=version, previous=previous, **fields)
    Release.objects.create(version=2, previous=first, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Release.objects.create(version=3, previous=first, **fields)


def test_publish_command(feed_files, signing_key, capsys):
    from django.core.management import call_command

    holds.hold(holder="item:1", url_sha256=URL_A)
    call_command("publish_blocklist")
    assert "Published release 1: 1 entries" in capsys.readouterr().out


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_never_share_or_skip_a_number(feed_files, signing_key):
    rounds = 4
    errors = []
    barrier = threading.Barrier(2)

    def publisher(n):
        try:
            barrier.wait()
            for i in range(rounds):
                holds.hold(holder=f"item:{n}:{i}", url_sha256=url_sha256(f"https://example.com/{n}/{i}.jpg"))
                releases.publish_release(storage=feed_files)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    versions = list(Release.objects.order_by("version").values_list("version", "previous_id"))
    assert versions == [(v, v - 1 if v > 1 else None) for v in range(1, 2 * rounds + 1)]
    last = Release.objects.get(version=2 * rounds)
    assert last.entries == 2 * rounds
    # Every delta applied in order gives the last snapshot.
    state = set()
    for version in range(1, 2 * rounds + 1):
        for line in lines(feed_files, "public", releases.delta_name(version)):
            (state.add if line["op"] == "add" else state.discard)(line["key"])
    snapshot = manifest(feed_files, "public", 2 * rounds)["snapshot"]["path"]  # may be an earlier release's file
    assert sorted(state) == [line["key"] for line in lines(feed_files, "public", snapshot)]


def test_beat_publishes_on_a_schedule_and_the_task_publishes(feed_files, signing_key, settings):
    from optout.tasks import publish_blocklist

    entry = settings.CELERY_BEAT_SCHEDULE["publish-blocklist"]
    assert entry["task"] == "optout.tasks.publish_blocklist"
    assert entry["schedule"] == settings.OPTOUT_PUBLISH_INTERVAL_MINUTES * 60
    publish_blocklist()
    publish_blocklist()  # nothing changed: still a new, freshly signed release
    assert list(Release.objects.order_by("version").values_list("version", flat=True)) == [1, 2]
