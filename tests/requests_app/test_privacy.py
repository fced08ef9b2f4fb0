"""No reference image byte reaches the disk, the database or the logs."""

import hashlib
import logging
import os
import sys

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from requests_app.models import ReferenceSignal, RemovalRequest
from tests import images

_written: list[str] | None = None


def _audit(event, args):
    # Every file opened for writing while a test records (sys.addaudithook cannot be removed,
    # so it does nothing unless a test has switched recording on).
    if _written is None or event != "open":
        return
    path, mode, flags = args
    if not isinstance(path, str | bytes | os.PathLike):
        return
    writing = bool(mode and any(c in mode for c in "wax+")) or bool(
        isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
    )
    if writing:
        _written.append(os.fsdecode(path))


sys.addaudithook(_audit)


@pytest.fixture
def written_files():
    global _written
    _written = []
    yield _written
    _written = None


def post_picture(client, data: bytes, name: str = "me.png", content_type: str = "image/png", **extra):
    return client.post(
        "/requests/new/",
        {
            "urls": "https://images.example.org/p.png",
            "confirm": "on",
            "images": [SimpleUploadedFile(name, data, content_type)],
        },
        **extra,
    )


def outside_the_cache(written: list[str], settings) -> list[str]:
    """Files written anywhere but the rate-limit cache (a file cache in the embedded set-up)."""
    cache_dir = str(settings.CACHES["default"].get("LOCATION", ""))
    return [path for path in written if not (cache_dir and path.startswith(cache_dir))]


@pytest.mark.django_db
def test_reference_images_are_hashed_in_memory_and_never_written(client, written_files, caplog, settings):
    caplog.set_level(logging.DEBUG)
    # Larger than Django's 2.5 MB threshold, above which its default handlers spill to a temp file.
    data = images.photo_png("astronaut", size=(2000, 1500))
    assert len(data) > 2_621_440
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
    marker = data[len(data) // 2 : len(data) // 2 + 64]

    response = post_picture(client, data)

    assert response.status_code == 303
    assert outside_the_cache(written_files, settings) == []
    for path in written_files:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert marker not in f.read()
    assert marker.hex() not in caplog.text and repr(marker)[2:-1] not in caplog.text
    removal = RemovalRequest.objects.get()
    reference = ReferenceSignal.objects.get(removal=removal, variant="")
    assert reference.sha256 == hashlib.sha256(data).hexdigest()  # hashed from the very bytes, then dropped


@pytest.mark.django_db
def test_an_upload_over_the_cap_is_refused_without_touching_the_disk(client, written_files, settings):
    # Django's stock handlers would spool this one to a temporary file.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    response = post_picture(client, images.photo_png("astronaut", size=(2000, 1500)))
    assert response.status_code == 400
    assert "larger than" in " ".join(response.context["form"].errors["images"])
    assert outside_the_cache(written_files, settings) == []


@pytest.mark.django_db
def test_the_database_holds_no_image_bytes(client):
    data = images.photo_png("coffee", size=(300, 200))
    assert post_picture(client, data).status_code == 303
    marker = data[len(data) // 2 : len(data) // 2 + 32]
    with connection.cursor() as cursor:
        for table in ("requests_app_removalrequest", "requests_app_removalitem", "requests_app_referencesignal"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 (fixed table names)
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        assert marker not in bytes(value)
                    elif isinstance(value, str):
                        assert marker.hex() not in value


@pytest.mark.django_db
def test_no_raw_ip_is_stored_or_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    address = "203.0.113.77"
    response = post_picture(client, images.photo_jpeg(size=(64, 48)), "me.jpg", "image/jpeg", REMOTE_ADDR=address)
    assert response.status_code == 303
    assert address not in caplog.text
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from introspection)
            assert address not in repr(cursor.fetchall())
