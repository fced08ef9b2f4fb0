"""Evidence a requester cannot forge: a sha256 the device sent is a claim, never strong evidence alone.

The attack: image sha256s are public (our public feed and img2dataset metadata carry them), so someone
who never had the picture sends a dataset row's sha256 with any perceptual hash they like.
"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from optout.client.canonical import url_sha256
from optout.imaging import compute_signals, hashbits
from optout.imaging.hashbits import MAX64
from optout.index import hashing
from optout.models import Dataset, DatasetRow
from requests_app import services, verification
from requests_app.models import ItemState, RemovalRequest
from tests import images
from tests.requests_app.builders import reviewer

ROW_URL = "https://cdn.example.net/private/photo.jpg"
TWIN_URL = "https://mirror.example.net/never-fetched.jpg"


def signals_of(data: bytes):
    return compute_signals(data, max_bytes=1 << 24, max_pixels=1 << 26)


def row_of(dataset: Dataset, url: str, data: bytes, *, hashed_by_us: bool = True, **overrides) -> DatasetRow:
    """A dataset row with the signals of these bytes: computed by our workers, or listed by the dataset file."""
    fields = hashing.row_signal_fields(signals_of(data))
    fields.update(overrides)
    return DatasetRow.objects.create(
        dataset=dataset,
        url=url,
        url_sha256=url_sha256(url),
        hashed_at=timezone.now() if hashed_by_us else None,
        **fields,
    )


@pytest.fixture
def indexed(db):
    """A dataset whose row the server hashed, and a second, never-fetched row sharing its sha256."""
    dataset = Dataset.objects.create(name="laion-test")
    data = images.photo_jpeg("astronaut")
    row = row_of(dataset, ROW_URL, data)
    twin = DatasetRow.objects.create(dataset=dataset, url=TWIN_URL, url_sha256=url_sha256(TWIN_URL), sha256=row.sha256)
    return dataset, data, row, twin


def forged_signals(row: DatasetRow) -> dict:
    """The row's public sha256 with a pHash 64 of 64 bits away from the row's."""
    return {
        "phash": hashbits.phash_to_hex(hashbits.from_signed64(row.phash) ^ MAX64),
        "pdq": None,
        "pdq_quality": 0,
        "sha256": row.sha256,
    }


def verified(case: str) -> RemovalRequest:
    removal = RemovalRequest.objects.get(case=case)
    assert verification.run_verification(removal.pk) is True
    removal.refresh_from_db()
    assert removal.state == "in_review"
    return removal


def assert_forgery_caught(removal: RemovalRequest, client) -> None:
    named = removal.items.get(found_by_system=False)
    assert named.url == ROW_URL
    assert named.sha256_equal is True
    assert named.hashes_inconsistent is True
    assert named.bytes_identical is False
    assert named.state == ItemState.NO_MATCH
    assert named.phash_distance == 64
    twin = removal.items.get(url=TWIN_URL)
    assert twin.found_by_system and twin.state != ItemState.MATCH_STRONG
    assert not removal.items.filter(state=ItemState.MATCH_STRONG).exists()
    assert not services.items_to_block(removal).exists()

    client.force_login(reviewer())
    page = client.get(f"/admin/requests_app/removalrequest/{removal.pk}/review/").content.decode()
    assert "Inconsistent reference" in page
    assert "these hashes can't come from one picture" in page  # the case and the item
    assert "can&#x27;t come from one picture" in page  # the item's verification detail
    assert "they are identical" not in page
    assert "the file is identical" not in page
    assert "hashes computed on the requester's device</strong> (not checked by our server)" in page


@pytest.mark.django_db
def test_a_forged_sha256_through_the_api_is_flagged_and_never_a_match(client, indexed):
    _, _, row, _ = indexed
    response = client.post(
        "/api/v1/requests/", {"urls": [ROW_URL], "signals": [forged_signals(row)]}, content_type="application/json"
    )
    assert response.status_code == 201, response.content

    assert_forgery_caught(verified(response.json()["case"]), client)


@pytest.mark.django_db
def test_a_forged_sha256_through_the_browser_form_is_flagged_and_never_a_match(client, indexed):
    _, _, row, _ = indexed
    response = client.post(
        "/requests/new/", {"urls": ROW_URL, "confirm": "on", "signals": json.dumps([forged_signals(row)])}
    )
    assert response.status_code == 303, response.content  # to the one-time receipt

    assert_forgery_caught(verified(RemovalRequest.objects.get().case), client)


@pytest.mark.django_db
def test_a_consistent_device_claim_counts_only_for_its_perceptual_hashes(client, indexed):
    """The right sha256 with a matching pHash and no PDQ: one family agrees, so weak, not strong."""
    _, data, row, _ = indexed
    claim = signals_of(data).to_dict() | {"pdq": None, "pdq_quality": 0}
    response = client.post(
        "/api/v1/requests/", {"urls": [ROW_URL], "signals": [claim]}, content_type="application/json"
    )
    removal = verified(response.json()["case"])

    named = removal.items.get(url=ROW_URL)
    assert (named.state, named.sha256_equal, named.bytes_identical) == (ItemState.MATCH_WEAK, True, False)
    assert named.reference_source == "client"
    assert removal.items.get(url=TWIN_URL).state == ItemState.MATCH_WEAK


@pytest.mark.django_db
def test_identical_bytes_are_strong_when_the_server_hashed_both_sides(client, indexed):
    _, data, row, _ = indexed
    response = client.post(
        "/api/v1/requests/",
        {"urls": [ROW_URL], "images": [SimpleUploadedFile("mine.jpg", data, "image/jpeg")]},
    )
    removal = verified(response.json()["case"])

    named = removal.items.get(url=ROW_URL)
    assert (named.state, named.bytes_identical, named.hashes_inconsistent) == (ItemState.MATCH_STRONG, True, False)
    assert named.reference_source == "upload"
    client.force_login(reviewer())
    page = client.get(f"/admin/requests_app/removalrequest/{removal.pk}/review/").content.decode()
    assert "our server hashed both files, and they are identical" in page
    assert "Inconsistent reference" not in page


@pytest.mark.django_db
def test_a_sha256_the_dataset_file_listed_is_no_proof_of_identical_bytes(client):
    """An upload matches a row whose hashes came from an imported file: only its perceptual hashes count."""
    dataset = Dataset.objects.create(name="imported")
    data = images.photo_jpeg("coffee")
    row_of(dataset, ROW_URL, data, hashed_by_us=False, pdq_0=None, pdq_1=None, pdq_2=None, pdq_3=None)
    response = client.post(
        "/api/v1/requests/",
        {"urls": [ROW_URL], "images": [SimpleUploadedFile("mine.jpg", data, "image/jpeg")]},
    )
    removal = verified(response.json()["case"])

    named = removal.items.get(url=ROW_URL)
    assert (named.state, named.sha256_equal, named.bytes_identical) == (ItemState.MATCH_WEAK, True, False)


@pytest.mark.django_db
def test_a_row_known_by_its_sha256_alone_is_never_strong(client, indexed):
    """Even against an upload, a never-fetched row that shares the sha256 is attached only as weak."""
    _, data, _, twin = indexed
    response = client.post(
        "/api/v1/requests/",
        {"urls": [ROW_URL], "images": [SimpleUploadedFile("mine.jpg", data, "image/jpeg")]},
    )
    removal = verified(response.json()["case"])

    found = removal.items.get(dataset_row=twin)
    assert found.found_by_system
    assert (found.state, found.sha256_equal, found.bytes_identical) == (ItemState.MATCH_WEAK, True, False)
    assert "never hashed by us" in found.detail


@pytest.mark.django_db
def test_approve_blocks_only_named_items_and_found_ones_the_reviewer_ticks(client, indexed):
    dataset, data, row, twin = indexed
    copy = row_of(dataset, "https://cdn.example.net/copy.jpg", images.photo_jpeg("astronaut", size=(300, 225)))
    response = client.post(
        "/api/v1/requests/",
        {"urls": [ROW_URL], "images": [SimpleUploadedFile("mine.jpg", data, "image/jpeg")]},
    )
    removal = verified(response.json()["case"])
    found = removal.items.get(dataset_row=copy)
    assert found.found_by_system and found.state == ItemState.MATCH_STRONG
    rita = reviewer()

    assert list(services.items_to_block(removal).values_list("url", flat=True)) == [ROW_URL]
    services.decide_item(found, reviewer=rita, decision="approve")
    services.approve_removal(removal, reviewer=rita)

    blocked = set(removal.items.filter(blocked=True).values_list("url", flat=True))
    assert blocked == {ROW_URL, copy.url}
    assert not removal.items.get(dataset_row=twin).blocked
