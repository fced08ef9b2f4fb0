import gzip
import hashlib
import json
import re
import socket

import pytest
from django.core.files.storage import storages

from optout.blocklist import holds, releases, signing
from optout.client.canonical import url_sha256
from optout.feed import consumers
from optout.models import FeedAccess, FeedConsumer
from tests.optout.conftest import read_bytes

pytestmark = pytest.mark.django_db

URL_A = url_sha256("https://images.example.org/private/a.jpg")
SHA_A = "ab" * 32


@pytest.fixture
def released(publish):
    holds.hold(holder="item:1", url_sha256=URL_A, image_sha256=SHA_A, phash=7, pdq=9, pdq_quality=80)
    return publish()


@pytest.fixture
def token():
    _, token = consumers.register_consumer(name="builder", contact="data@builder.example")
    return token


def max_age(response) -> int:
    return int(re.search(r"max-age=(\d+)", response["Cache-Control"])[1])


def test_nothing_is_served_before_the_first_release(client, feed_files):
    assert client.get("/feed/v1/public/manifest.json").status_code == 404


def test_manifest_has_a_strong_etag_a_bounded_max_age_and_answers_304(client, released, feed_files, settings):
    response = client.get("/feed/v1/public/manifest.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.content
    assert response["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert body == read_bytes(feed_files, "public", releases.manifest_name(1))
    assert response["Cache-Control"].startswith("public, ")
    assert 0 < max_age(response) <= settings.OPTOUT_PUBLISH_INTERVAL_MINUTES * 60
    assert response["X-Blocklist-Version"] == "1"
    again = client.get("/feed/v1/public/manifest.json", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == response["ETag"]
    assert client.get("/feed/v1/public/manifest.json", HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_manifest_max_age_never_outlives_the_expiry(client, released, settings):
    settings.OPTOUT_PUBLISH_INTERVAL_MINUTES = 10**6
    response = client.get("/feed/v1/public/manifest.json")
    assert 47 * 3600 < max_age(response) <= settings.OPTOUT_RELEASE_TTL_HOURS * 3600
    released.expires_at = released.created_at
    released.save(update_fields=["expires_at"])
    assert client.get("/feed/v1/public/manifest.json")["Cache-Control"] == "public, no-cache"


def test_manifest_is_gzip_encoded_for_clients_that_accept_it(client, released):
    plain = client.get("/feed/v1/public/manifest.json")
    zipped = client.get("/feed/v1/public/manifest.json", HTTP_ACCEPT_ENCODING="gzip, br")
    assert zipped["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.content) == plain.content
    assert zipped["ETag"] != plain["ETag"] and not zipped["ETag"].startswith("W/")
    assert "Accept-Encoding" in zipped["Vary"]
    again = client.get("/feed/v1/public/manifest.json", HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=zipped["ETag"])
    assert again.status_code == 304


def test_signature_verifies_with_the_well_known_public_key(client, released, signing_key):
    pub = client.get("/.well-known/optout/minisign.pub")
    assert pub.status_code == 200
    key = signing.parse_public_key(pub.content.decode())
    assert key == signing_key.public_key
    body = client.get("/feed/v1/public/manifest.json").content
    signature = client.get("/feed/v1/public/manifest.json.minisig").content.decode()
    verified = signing.verify(body, signature, key)
    manifest = json.loads(body)
    assert verified.trusted_comment == f"feed:optout-public version:1 expires:{manifest['expires']}"


def test_artifacts_are_immutable_gzip_with_the_sha256_of_the_manifest(client, released):
    manifest = client.get("/feed/v1/public/manifest.json").json()
    for part in ("snapshot", "delta"):
        response = client.get(f"/feed/v1/public/{manifest[part]['path']}")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/gzip"
        assert "Content-Encoding" not in response
        data = b"".join(response.streaming_content)
        assert hashlib.sha256(data).hexdigest() == manifest[part]["sha256"]
        assert len(data) == manifest[part]["bytes"] == int(response["Content-Length"])
        assert response["ETag"] == f'"{manifest[part]["sha256"]}"'
        assert response["Cache-Control"] == "public, max-age=31536000, immutable"
        cached = client.get(f"/feed/v1/public/{manifest[part]['path']}", HTTP_IF_NONE_MATCH=response["ETag"])
        assert cached.status_code == 304
    lines = [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]
    assert URL_A in [line["key"] for line in lines] and len(lines) == 10  # with its decoys
    assert [line["sha256"] for line in lines if line["sha256"]] == [SHA_A]


@pytest.mark.parametrize(
    "path",
    [
        "/feed/v1/public/snapshot-000002.jsonl.gz",  # not published
        "/feed/v1/public/notes.txt",
        "/feed/v1/public/..%2fpartner%2fsnapshot-000001.jsonl.gz",
        "/feed/v1/public/snapshot-1.jsonl.gz",
    ],
)
def test_unknown_files_are_not_found(client, released, path):
    assert client.get(path).status_code == 404


def test_partner_tier_needs_a_valid_active_token(client, released, token):
    assert client.get("/feed/v1/partner/manifest.json").status_code == 401
    assert client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION="Bearer optp_wrong").status_code == 401
    ok = client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert ok.status_code == 200
    assert ok["Cache-Control"].startswith("private, ")
    assert "phash" in ok.json()["algorithms"]
    FeedConsumer.objects.update(active=False)
    assert client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_partner_snapshot_carries_perceptual_hashes(client, released, token):
    manifest = client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    response = client.get(f"/feed/v1/partner/{manifest['snapshot']['path']}", HTTP_AUTHORIZATION=f"Bearer {token}")
    line = json.loads(gzip.decompress(b"".join(response.streaming_content)))
    assert (line["phash"], line["pdq"], line["pdq_quality"]) == ("0000000000000007", f"{9:064x}", 80)


def test_every_partner_request_is_logged_per_consumer(client, released, token):
    client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {token}")
    client.get("/feed/v1/partner/nothing.json", HTTP_AUTHORIZATION=f"Bearer {token}")
    client.get("/feed/v1/partner/manifest.json")  # anonymous: nobody to log
    log = list(FeedAccess.objects.order_by("at", "pk").values_list("consumer__name", "path", "status"))
    assert log == [
        ("builder", "/feed/v1/partner/manifest.json", 200),
        ("builder", "/feed/v1/partner/nothing.json", 404),
    ]


def test_partners_are_rate_limited_per_token(client, released, token, settings):
    settings.OPTOUT_PARTNER_REQUESTS_PER_HOUR = 2
    _, other = consumers.register_consumer(name="other", contact="x@other.example")
    for _ in range(2):
        assert client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    limited = client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert client.get("/feed/v1/partner/manifest.json", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 200
    assert FeedAccess.objects.filter(status=429).count() == 1


def test_tokens_are_stored_only_as_hmacs(token):
    consumer = FeedConsumer.objects.get()
    assert token not in consumer.token_hmac
    assert consumer.token_hmac == consumers.token_hmac(token)
    assert consumers.find_consumer(token) == consumer
    assert consumers.find_consumer(token + "x") is None


def test_tokens_survive_a_key_rotation_while_the_old_key_is_a_fallback(token, settings):
    consumer = FeedConsumer.objects.get()
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-key-" + "k" * 50
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert consumers.token_hmac(token) != consumer.token_hmac
    assert consumers.find_consumer(token) == consumer
    settings.SECRET_KEY_FALLBACKS = []
    assert consumers.find_consumer(token) is None


def test_tokens_stored_before_salted_hmac_still_work(token, settings):
    import hashlib
    import hmac

    key = hashlib.sha256(b"optout.feed-token" + settings.SECRET_KEY.encode()).digest()
    FeedConsumer.objects.update(token_hmac=hmac.new(key, token.encode(), hashlib.sha256).hexdigest())
    assert consumers.find_consumer(token) == FeedConsumer.objects.get()


def test_admin_shows_a_new_consumers_token_once(admin_client):
    response = admin_client.post(
        "/admin/optout/feedconsumer/add/", {"name": "laion-mirror", "contact": "ops@mirror.example", "active": "on"}
    )
    assert response.status_code == 200
    token = re.search(r"optp_[A-Za-z0-9_-]+", response.content.decode())[0]
    consumer = FeedConsumer.objects.get(name="laion-mirror")
    assert consumers.find_consumer(token) == consumer
    assert "no-store" in response["Cache-Control"]
    page = admin_client.get(f"/admin/optout/feedconsumer/{consumer.pk}/change/").content.decode()
    assert token not in page and consumer.token_hmac not in page
    renewed = admin_client.post(
        "/admin/optout/feedconsumer/", {"action": "issue_new_token", "_selected_action": [consumer.pk]}
    )
    new_token = re.search(r"optp_[A-Za-z0-9_-]+", renewed.content.decode())[0]
    assert new_token != token
    assert consumers.find_consumer(token) is None
    assert consumers.find_consumer(new_token) == consumer


def test_admin_lists_entries_and_releases_read_only(admin_client, released):
    assert admin_client.get("/admin/optout/blocklistentry/").status_code == 200
    assert admin_client.get("/admin/optout/release/").status_code == 200
    assert admin_client.get("/admin/optout/blocklistentry/add/").status_code == 403


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_storage(settings):
    """The default storage on a local S3-compatible server (moto's server mode on loopback)."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, **credentials).create_bucket(Bucket="releases")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "releases",
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "access_key": "testing",
                "secret_key": "testing",
                "default_acl": None,
                "file_overwrite": False,
                "querystring_auth": False,
            },
        },
    }
    yield storages["default"]
    server.stop()


def test_releases_are_written_to_and_served_from_s3(
    client, signing_key, s3_storage, django_capture_on_commit_callbacks
):
    holds.hold(holder="item:1", url_sha256=URL_A, image_sha256=SHA_A)
    with django_capture_on_commit_callbacks(execute=True):
        releases.publish_release()
    assert s3_storage.exists("feed/v1/public/manifest-000001.json")
    assert s3_storage.exists("feed/v1/public/manifest.json")
    manifest = client.get("/feed/v1/public/manifest.json").json()
    signature = client.get("/feed/v1/public/manifest.json.minisig").content.decode()
    signing.verify(read_bytes(s3_storage, "public", "manifest.json"), signature, signing_key.public_key)
    snapshot = client.get(f"/feed/v1/public/{manifest['snapshot']['path']}")
    data = b"".join(snapshot.streaming_content)
    assert hashlib.sha256(data).hexdigest() == manifest["snapshot"]["sha256"]
    assert URL_A in [json.loads(line)["key"] for line in gzip.decompress(data).splitlines()]
