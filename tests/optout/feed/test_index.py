"""The feed index at /feed/v1/public/ and /feed/v1/partner/: JSON for tools, HTML for a browser, never a 404."""

import pytest

from optout.blocklist import holds
from optout.client import minisign
from optout.client.canonical import url_sha256

pytestmark = pytest.mark.django_db


@pytest.fixture
def released(publish):
    holds.hold(holder="item:1", url_sha256=url_sha256("https://images.example.org/a.jpg"))
    return publish()


def test_the_public_index_names_the_manifest_and_the_keys_fingerprint(client, released, signing_key):
    response = client.get("/feed/v1/public/")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    index = response.json()
    key = minisign.parse_public_key(signing_key.public_key.to_base64())
    assert index["feed"] == "optout-public" and index["tier"] == "public" and not index["token_required"]
    assert index["manifest"]["url"] == "http://testserver/feed/v1/public/manifest.json"
    assert index["manifest"]["signature"] == "http://testserver/feed/v1/public/manifest.json.minisig"
    assert index["manifest"]["version"] == released.version
    assert index["public_key"] == {
        "url": "http://testserver/.well-known/optout/minisign.pub",
        "key_id": key.key_id_hex,
        "fingerprint": key.fingerprint,
    }
    assert index["client"]["pull"].startswith("optout-client pull --feed http://testserver/feed/v1/public/")
    # What it names is there.
    assert client.get("/feed/v1/public/manifest.json").status_code == 200


def test_a_browser_gets_the_index_as_a_page(client, released, signing_key):
    response = client.get("/feed/v1/public/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    fingerprint = minisign.parse_public_key(signing_key.public_key.to_base64()).fingerprint
    assert f'<code class="fingerprint">{fingerprint}</code>' in page
    assert "version 1, 1 entries" in page and "optout-client pull --feed" in page


def test_the_partner_index_needs_no_token_and_says_its_files_do(client, released):
    response = client.get("/feed/v1/partner/")
    assert response.status_code == 200
    index = response.json()
    assert index["token_required"] and "--token" in index["client"]["pull"]
    assert index["manifest"]["url"] == "http://testserver/feed/v1/partner/manifest.json"
    assert client.get("/feed/v1/partner/manifest.json").status_code == 401


def test_before_any_release_the_index_says_so_and_is_not_a_debug_404(client, signing_key, settings):
    settings.DEBUG = True
    response = client.get("/feed/v1/public/")
    assert response.status_code == 200
    assert response.json()["manifest"] is None
    page = client.get("/feed/v1/public/", HTTP_ACCEPT="text/html").content.decode()
    assert "Nothing has been published on this feed yet." in page and "Page not found" not in page
