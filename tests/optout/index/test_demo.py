import pytest
from django.core.management import call_command

from optout.imaging import compute_signals
from optout.index import demo, matcher
from optout.models import Dataset


@pytest.mark.django_db
def test_load_demo_creates_hashed_rows_once(settings):
    settings.OPTOUT_PUBLIC_URL = "http://127.0.0.1:8000"
    call_command("load_demo")
    dataset = Dataset.objects.get(name="demo")
    assert dataset.rows.count() == len(demo.names()) == 40
    assert not dataset.rows.filter(phash=None).exists()
    assert dataset.rows.filter(url="http://127.0.0.1:8000/demo/images/astronaut-small.jpg").exists()
    call_command("load_demo")
    assert dataset.rows.count() == 40


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
