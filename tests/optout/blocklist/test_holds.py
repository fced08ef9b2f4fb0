import pytest

from optout.blocklist import holds, releases
from optout.client.canonical import url_sha256
from optout.imaging import hashbits
from optout.models import BlocklistEntry, BlocklistHold
from tests.optout.conftest import group, keys, lines

pytestmark = pytest.mark.django_db

URL_A = url_sha256("https://images.example.org/private/a.jpg")
URL_B = url_sha256("https://images.example.org/private/b.jpg")
SHA_A = "aa" * 32


def test_an_entry_stays_blocked_while_another_holder_holds_it(feed_files, signing_key, publish):
    holds.hold(holder="item:1", url_sha256=URL_A)
    entry = holds.hold(holder="item:2", url_sha256=URL_A, image_sha256=SHA_A)
    assert entry.sha256 == SHA_A  # filled in by the second holder
    holds.release_hold(holder="item:1")
    publish()
    assert keys(feed_files, "partner", releases.snapshot_name(1)) == [URL_A]
    assert keys(feed_files, "public", releases.snapshot_name(1)) == group(URL_A)


def test_hold_is_idempotent_and_refuses_a_second_url_for_one_holder(feed_files, signing_key):
    first = holds.hold(holder="item:1", url_sha256=URL_A)
    assert holds.hold(holder="item:1", url_sha256=URL_A).pk == first.pk
    with pytest.raises(holds.HoldConflict):
        holds.hold(holder="item:1", url_sha256=URL_B)


def test_hold_creates_one_entry_per_url_and_fills_in_unknown_hashes():
    holds.hold(holder="item:1", url_sha256=URL_A.upper())
    entry = holds.hold(holder="item:2", url_sha256=URL_A, image_sha256=SHA_A, phash=1 << 63, pdq=3, pdq_quality=77)
    holds.hold(holder="item:3", url_sha256=URL_A, image_sha256="bb" * 32, phash=5)
    entry.refresh_from_db()
    assert BlocklistEntry.objects.count() == 1
    assert (entry.url_sha256, entry.sha256, entry.pdq_quality) == (URL_A, SHA_A, 77)
    assert hashbits.from_signed64(entry.phash) == 1 << 63  # the first known value is kept
    assert entry.pdq == f"{3:064x}"
    assert entry.blocked and entry.dirty and not entry.published
    assert set(BlocklistHold.objects.values_list("holder", flat=True)) == {"item:1", "item:2", "item:3"}


@pytest.mark.parametrize(
    "arguments",
    [
        {"url_sha256": "not-a-hash"},
        {"url_sha256": URL_A, "image_sha256": "abc"},
        {"url_sha256": URL_A, "phash": 1 << 64},
        {"url_sha256": URL_A, "pdq": -1},
        {"url_sha256": URL_A, "pdq": 1, "pdq_quality": 101},
    ],
)
def test_hold_refuses_malformed_hashes(arguments):
    with pytest.raises(hashbits.BadHash):
        holds.hold(holder="item:1", **arguments)
    assert not BlocklistEntry.objects.exists()


def test_release_hold_of_an_unknown_holder_is_a_no_op():
    holds.release_hold(holder="item:404")
    assert not BlocklistEntry.objects.exists()


def test_releasing_the_last_hold_unblocks_and_marks_for_a_tombstone(publish, feed_files):
    holds.hold(holder="item:1", url_sha256=URL_A)
    publish()
    entry = BlocklistEntry.objects.get()
    assert (entry.blocked, entry.published, entry.dirty) == (True, True, False)
    holds.release_hold(holder="item:1")
    entry.refresh_from_db()
    assert (entry.blocked, entry.published, entry.dirty) == (False, True, True)
    publish()
    entry.refresh_from_db()
    assert (entry.blocked, entry.published, entry.dirty) == (False, False, False)
    assert lines(feed_files, "partner", releases.delta_name(2)) == [{"key": URL_A, "op": "remove", "url_sha256": URL_A}]
    assert lines(feed_files, "public", releases.delta_name(2)) == [
        {"key": key, "op": "remove", "url_sha256": key} for key in group(URL_A)
    ]
    # Held again later: an add in the next delta, with the same decoys.
    holds.hold(holder="item:9", url_sha256=URL_A)
    publish()
    assert [line["op"] for line in lines(feed_files, "partner", releases.delta_name(3))] == ["add"]
    assert keys(feed_files, "public", releases.delta_name(3)) == group(URL_A)


def test_hashes_filled_in_after_publication_reach_the_partner_delta(publish, feed_files):
    holds.hold(holder="item:1", url_sha256=URL_A)
    publish()
    holds.hold(holder="item:2", url_sha256=URL_A, phash=0xABC)
    publish()
    (line,) = lines(feed_files, "partner", releases.delta_name(2))
    assert (line["op"], line["phash"]) == ("add", "0000000000000abc")
