"""The client against the real feed views on a live server: the README's steps, both tiers."""

import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.blocklist import holds, releases
from optout.client.canonical import url_sha256
from optout.feed import consumers

pytestmark = pytest.mark.django_db(transaction=True)

BLOCKED = "https://images.example.org/private/a.jpg"
PHASH = 0x0123_4567_89AB_CDEF


@pytest.fixture
def published(feed_files, signing_key):
    holds.hold(holder="item:1", url_sha256=url_sha256(BLOCKED), image_sha256="ab" * 32, phash=PHASH)
    releases.publish_release(storage=feed_files)
    return signing_key


def test_pull_from_the_feed_and_filter_a_parquet_file(published, live_server, builder, tmp_path):
    pub = tmp_path / "minisign.pub"
    with urllib.request.urlopen(f"{live_server.url}/.well-known/optout/minisign.pub", timeout=10) as response:
        pub.write_bytes(response.read())
    code, out, err = builder("pull", "--feed", f"{live_server.url}/feed/v1/public/", "--pubkey", pub)
    assert code == 0, err
    assert "pulled version 1 (snapshot): 10 entries" in out

    urls = ["HTTPS://IMAGES.Example.org:443/private/a.jpg#x", "https://example.net/fine.jpg"]
    pq.write_table(pa.table({"url": urls, "caption": ["a", "b"]}), tmp_path / "part-0.parquet")
    code, out, err = builder("filter", tmp_path / "part-0.parquet", "--out", tmp_path / "clean.parquet")
    assert code == 0, err
    assert "2 rows read, 1 kept, 1 dropped" in out
    assert pq.read_table(tmp_path / "clean.parquet").column("url").to_pylist() == ["https://example.net/fine.jpg"]


def test_the_partner_tier_needs_a_token_and_carries_phashes(published, live_server, builder, tmp_path):
    _, token = consumers.register_consumer(name="builder", contact="data@builder.example")
    base = f"{live_server.url}/feed/v1/partner/"
    pubkey = published.public_key.to_base64()
    code, out, err = builder("pull", "--feed", base, "--pubkey", pubkey)
    assert code == 1 and "HTTP 401" in err and "--token" in err

    code, out, err = builder("pull", "--feed", base, "--pubkey", pubkey, "--token", token)
    assert code == 0, err
    near = f"{PHASH ^ 0b11:016x}"
    pq.write_table(pa.table({"url": ["https://other.example/x.jpg"], "phash": [near]}), tmp_path / "in.parquet")
    args = ["--phash-column", "phash", "--max-distance", "4"]
    code, out, err = builder("filter", tmp_path / "in.parquet", "--out", tmp_path / "out.parquet", *args)
    assert code == 0, err
    assert "1 rows read, 0 kept, 1 dropped" in out and "phash 1" in out
