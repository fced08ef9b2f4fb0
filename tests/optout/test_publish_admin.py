"""Publishers can publish a release from the admin; nobody else can."""

import pytest

from optout.models import Release
from tests.users import staff

pytestmark = pytest.mark.django_db


def test_a_publisher_publishes_from_the_release_list(client, signing_key, feed_files):
    client.force_login(staff("pia", "view_release", "publish_blocklist"))
    listing = client.get("/admin/optout/release/")
    assert b"Publish a release now" in listing.content
    response = client.post("/admin/optout/release/publish/", follow=True)
    assert response.status_code == 200
    assert Release.objects.get().version == 1
    assert "Published release 1" in response.content.decode()


def test_without_the_permission_there_is_no_button_and_no_release(client, signing_key, feed_files):
    client.force_login(staff("rex", "view_release"))
    assert b"Publish a release now" not in client.get("/admin/optout/release/").content
    assert client.post("/admin/optout/release/publish/").status_code == 403
    assert not Release.objects.exists()


def test_publishing_needs_a_post(client, signing_key, feed_files):
    client.force_login(staff("pia", "view_release", "publish_blocklist"))
    assert client.get("/admin/optout/release/publish/").status_code == 405
    assert not Release.objects.exists()


def test_a_missing_signing_key_comes_back_as_a_message(client, settings, feed_files, tmp_path):
    settings.OPTOUT_SIGNING_KEY_FILE = str(tmp_path / "absent.key")
    client.force_login(staff("pia", "view_release", "publish_blocklist"))
    response = client.post("/admin/optout/release/publish/", follow=True)
    assert response.status_code == 200
    assert not Release.objects.exists()
    shown = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert shown == [
        (
            "error",
            f"No signing key at {tmp_path / 'absent.key'}. Create one with `python manage.py "
            "generate_signing_key` or point OPTOUT_SIGNING_KEY_FILE at it.",
        )
    ]
