"""Fixtures for the blocklist, release and feed tests, and helpers to read release files."""

import gzip
import json

import pytest
from django.core.files.storage import storages

from optout.blocklist import releases, signing
from optout.models import PublicDecoy


@pytest.fixture
def signing_key(tmp_path, settings) -> signing.SigningKey:
    """A fresh key in a temporary OPTOUT_SIGNING_KEY_FILE."""
    key = signing.generate()
    path = tmp_path / "minisign.key"
    path.write_text(key.to_file())
    settings.OPTOUT_SIGNING_KEY_FILE = str(path)
    settings.OPTOUT_SIGNING_KEY_PASSWORD_FILE = ""
    settings.OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE = ""
    return key


@pytest.fixture
def feed_files(tmp_path, settings):
    """Release files go to a temporary directory through the default storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return storages["default"]


def read_bytes(storage, tier: str, name: str) -> bytes:
    with storage.open(releases.storage_path(tier, name), "rb") as handle:
        return handle.read()


def manifest(storage, tier: str, version: int) -> dict:
    return json.loads(read_bytes(storage, tier, releases.manifest_name(version)))


def lines(storage, tier: str, name: str) -> list[dict]:
    text = gzip.decompress(read_bytes(storage, tier, name)).decode()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def publish(feed_files, signing_key, django_capture_on_commit_callbacks):
    """Publish a release and run its on-commit work (copies, the release_published signal), as after a commit."""

    def run():
        with django_capture_on_commit_callbacks(execute=True):
            return releases.publish_release(storage=feed_files)

    return run


def keys(storage, tier: str, name: str) -> list[str]:
    return [line["key"] for line in lines(storage, tier, name)]


def group(key: str) -> list[str]:
    """The public tier's keys for an entry: its own and its decoys, sorted as the snapshot is."""
    return sorted([key, *PublicDecoy.objects.filter(entry__url_sha256=key).values_list("url_sha256", flat=True)])
