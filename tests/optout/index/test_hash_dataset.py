import pytest
from django.core.management import CommandError, call_command

from optout.client.canonical import url_sha256
from optout.imaging import compute_signals, hashbits
from optout.index import hashing
from optout.models import Dataset, DatasetRow
from tests import images


def add_row(dataset, url) -> DatasetRow:
    return DatasetRow.objects.create(dataset=dataset, url=url, url_sha256=url_sha256(url))


@pytest.fixture
def dataset():
    return Dataset.objects.create(name="laion-mini")


@pytest.mark.django_db
def test_fills_in_signals_and_records_why_others_failed(dataset, image_server, fetch_connections):
    photo = images.photo_jpeg("rocket")
    image_server.add("/ok.jpg", photo, content_type="image/jpeg")
    image_server.add("/page.jpg", b"<html></html>", content_type="image/jpeg")
    ok = add_row(dataset, image_server.url("/ok.jpg"))
    page = add_row(dataset, image_server.url("/page.jpg"))
    private = add_row(dataset, "http://192.168.1.10/cam.jpg")

    call_command("hash_dataset", "laion-mini", "--sync", "--batch-size", "2")

    ok.refresh_from_db()
    expected = compute_signals(photo, max_bytes=1 << 24, max_pixels=1 << 26)
    assert hashbits.from_signed64(ok.phash) == expected.phash
    assert ok.sha256 == expected.sha256
    assert ok.hashed_at is not None and ok.fetch_error == ""
    assert ok.descriptor.key == expected.descriptor
    assert ok.ph_c0 is not None
    page.refresh_from_db()
    private.refresh_from_db()
    assert (page.fetch_error, page.phash) == ("not_an_image", None)
    assert private.fetch_error == "refused"
    assert all(address.is_loopback for address, _ in fetch_connections)


@pytest.mark.django_db
def test_rerunning_skips_rows_that_are_done(dataset, image_server):
    image_server.add("/ok.jpg", images.photo_jpeg("coffee"), content_type="image/jpeg")
    add_row(dataset, image_server.url("/ok.jpg"))
    call_command("hash_dataset", "laion-mini", "--sync")
    call_command("hash_dataset", "laion-mini", "--sync")
    assert image_server.hits["/ok.jpg"] == 1


@pytest.mark.django_db
def test_an_unreachable_url_is_retried_then_given_up(dataset, image_server):
    image_server.add("/gone.jpg", b"", status=503)
    row = add_row(dataset, image_server.url("/gone.jpg"))
    for attempt in range(1, hashing.MAX_HASH_ATTEMPTS + 1):
        call_command("hash_dataset", "laion-mini", "--sync")
        row.refresh_from_db()
        assert row.hash_attempts == attempt
        assert (row.hashed_at is not None) == (attempt == hashing.MAX_HASH_ATTEMPTS)
    call_command("hash_dataset", "laion-mini", "--sync")
    assert image_server.hits["/gone.jpg"] == hashing.MAX_HASH_ATTEMPTS


@pytest.mark.django_db
def test_tasks_are_queued_in_batches_on_commit(dataset, monkeypatch, django_capture_on_commit_callbacks):
    rows = [add_row(dataset, f"https://example.org/{n}.jpg") for n in range(5)]
    sent = []
    monkeypatch.setattr("optout.tasks.hash_rows.delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("hash_dataset", "laion-mini", "--batch-size", "2")
    assert sent == [[rows[0].pk, rows[1].pk], [rows[2].pk, rows[3].pk], [rows[4].pk]]


@pytest.mark.django_db
def test_an_unknown_dataset_is_a_clear_error():
    with pytest.raises(CommandError, match="no dataset named"):
        call_command("hash_dataset", "nope")
