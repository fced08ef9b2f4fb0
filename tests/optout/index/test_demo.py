import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import transaction

from optout.imaging import compute_signals
from optout.index import demo, matcher
from optout.models import Dataset
from requests_app import intake, services, verification


@pytest.mark.django_db
def test_load_demo_creates_hashed_rows_once(settings):
    settings.OPTOUT_PUBLIC_URL = "http://127.0.0.1:8000"
    call_command("load_demo")
    dataset = Dataset.objects.get(name="demo")
    assert dataset.rows.count() == len(demo.names()) == 56
    assert not dataset.rows.filter(phash=None).exists()
    assert dataset.rows.filter(url="http://127.0.0.1:8000/demo/images/astronaut-small.jpg").exists()
    call_command("load_demo")
    assert dataset.rows.count() == 56


@pytest.mark.django_db
def test_transformed_copies_are_found_by_the_matcher(settings):
    call_command("load_demo")
    reference = compute_signals(demo.image_bytes("chelsea-original"), max_bytes=1 << 24, max_pixels=1 << 26)
    found = {m.row_id for m in matcher.phash_neighbours(reference.phash, settings.OPTOUT_PHASH_THRESHOLD)}
    urls = set(Dataset.objects.get(name="demo").rows.filter(pk__in=found).values_list("url", flat=True))
    names = {url.rsplit("/", 1)[1] for url in urls}
    assert {"chelsea-original.jpg", "chelsea-small.jpg", "chelsea-recompressed.jpg"} <= names
    assert not any(name.startswith(("astronaut", "coffee")) for name in names)


@pytest.mark.django_db
def test_the_app_serves_the_demo_images(client):
    response = client.get("/demo/images/coffee-cropped.jpg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response.content == demo.image_bytes("coffee-cropped")
    assert client.get("/demo/images/coffee-nope.jpg").status_code == 404
    assert client.get("/demo/images/etc-passwd.jpg").status_code == 404


@pytest.mark.django_db
def test_the_demo_page_lists_the_rows(client):
    call_command("load_demo")
    body = client.get("/demo/").content.decode()
    assert "rocket-mirrored.jpg" in body


def _demo_request(image_server, settings, photo: str, urls: list[str]):
    settings.OPTOUT_PUBLIC_URL = image_server.url("").rstrip("/")
    for name in demo.names():
        image_server.add(f"/demo/images/{name}.jpg", demo.image_bytes(name), content_type="image/jpeg")
    call_command("load_demo")
    # The requester's own copy of the photo: the same picture, never the same file.
    mine = io.BytesIO()
    demo.source(photo).save(mine, "PNG")
    references = intake.hash_uploads([SimpleUploadedFile("mine.png", mine.getvalue(), "image/png")])
    with transaction.atomic():
        removal, _ = services.submit_removal(urls=urls, references=references)
    verification.run_verification(removal.pk)
    return {item.url.rsplit("/", 1)[1].removesuffix(".jpg"): item for item in removal.items.all()}


@pytest.mark.django_db
def test_a_request_for_a_demo_photo_verifies_every_copy_it_names(image_server, settings):
    copies = [f"coffee-{variant}" for variant in demo.VARIANTS]
    items = _demo_request(image_server, settings, "coffee", [image_server.url(f"/demo/images/{c}.jpg") for c in copies])
    assert {name: item.state for name, item in items.items() if not item.found_by_system} == {
        name: items[name].state for name in copies
    }
    for name in copies:
        assert items[name].state in ("match_strong", "match_weak"), (name, items[name].phash_distance)
    assert items["coffee-mirrored"].reference_variant == "mirrored"
    # A framed or captioned copy is met from either side: the reference's pads, or the link's picture trimmed.
    framed, captioned = items["coffee-framed"], items["coffee-captioned"]
    assert framed.reference_variant.startswith("bordered") or framed.candidate_variant.startswith(("trimmed", "framed"))
    assert captioned.reference_variant.startswith("bar-bottom") or captioned.candidate_variant != ""
    # Nothing of another photo came along.
    assert not any(name.startswith(("astronaut", "chelsea", "rocket")) for name in items)


@pytest.mark.django_db
def test_discovery_finds_the_demo_copies_inside_the_photo_framed_and_captioned(image_server, settings):
    items = _demo_request(
        image_server, settings, "astronaut", [image_server.url("/demo/images/astronaut-original.jpg")]
    )
    found = {name for name, item in items.items() if item.found_by_system and item.state != "no_match"}
    assert {"astronaut-small", "astronaut-recompressed", "astronaut-cropped", "astronaut-mirrored"} <= found
    # The reference's pads find the framed and captioned copies too (variant set 3).
    assert {"astronaut-framed", "astronaut-captioned"} <= found
    assert all(name.startswith("astronaut") for name in found)
