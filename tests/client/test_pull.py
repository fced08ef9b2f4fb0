"""``pull``: verified releases are accepted, and every forged or stale answer is refused with the last good state kept."""

import gzip
import hashlib
import json

import pytest

from optout.blocklist import holds, signing
from optout.client import state
from optout.client.canonical import url_sha256
from tests.optout.conftest import group

pytestmark = pytest.mark.django_db

URL_A = "https://images.example.org/private/a.jpg"
URL_B = "https://images.example.org/private/b.jpg"
URL_C = "https://cdn.example.net/c.png"
SHA_A = "aa" * 32


def hold(number: int, url: str, **signals):
    return holds.hold(holder=f"item:{number}", url_sha256=url_sha256(url), **signals)


def public_keys(*urls: str) -> set[str]:
    """What the public tier holds for these blocked URLs: each key with its decoys."""
    return {key for url in urls for key in group(url_sha256(url))}


def keys_in_state(builder) -> set[str]:
    current = state.read_current(builder.state_dir)
    return {entry["key"] for entry in state.read_entries(builder.state_dir / current.generation)}


@pytest.fixture
def first(mirror, publish, builder, signing_key):
    """Release 1 (A and B) published and pulled; returns the pubkey to pass."""
    hold(1, URL_A, image_sha256=SHA_A)
    hold(2, URL_B)
    publish()
    mirror.sync()
    pubkey = signing_key.public_key.to_base64()
    code, out, err = builder("pull", "--feed", mirror.base(), "--pubkey", pubkey)
    assert (code, err) == (0, ""), err
    return pubkey


def assert_refused(builder, mirror, reason: str, *, version: int = 1, pubkey: str | None = None) -> str:
    before = (builder.state_dir / state.CURRENT).read_bytes()
    args = ["pull", "--feed", mirror.base()] + (["--pubkey", pubkey] if pubkey else [])
    code, out, err = builder(*args)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("optout: pull refused: ")
    assert reason in err
    assert f"(kept version {version})" in err
    assert (builder.state_dir / state.CURRENT).read_bytes() == before
    code, out, _ = builder("status")
    assert code == 0 and f"version:  {version} " in out
    return err


# --- Accepted -------------------------------------------------------------------------------------------


def test_first_pull_takes_the_snapshot_as_parquet(first, builder, mirror):
    assert keys_in_state(builder) == public_keys(URL_A, URL_B)
    assert mirror.server.hits["/feed/v1/public/snapshot-000001.parquet"] == 1
    assert mirror.server.hits["/feed/v1/public/snapshot-000001.jsonl.gz"] == 0
    assert "entries.parquet" in state.read_current(builder.state_dir).files
    assert state.load(builder.state_dir).sha256_bytes == bytes.fromhex(SHA_A)
    assert mirror.server.hits["/feed/v1/public/delta-000001.jsonl.gz"] == 0
    current = state.read_current(builder.state_dir)
    assert current.version == 1 and current.entries == 20  # two keys, nine decoys each
    assert current.manifest_sha256 == hashlib.sha256(mirror.file("manifest-000001.json")).hexdigest()


def test_second_pull_applies_the_delta(first, builder, mirror, publish):
    holds.release_hold(holder="item:2")
    hold(3, URL_C)
    publish()
    mirror.sync()
    (builder.state_dir / "vacation").mkdir()  # --state may hold other things: they stay
    code, out, err = builder("pull", "--feed", mirror.base())
    assert code == 0, err
    assert "pulled version 2 (delta): 20 entries" in out
    generations = sorted(path.name for path in builder.state_dir.iterdir() if path.is_dir())
    assert generations == sorted(["vacation", state.read_current(builder.state_dir).generation])
    assert mirror.server.hits["/feed/v1/public/delta-000002.jsonl.gz"] == 1
    assert mirror.server.hits["/feed/v1/public/snapshot-000002.jsonl.gz"] == 0
    assert keys_in_state(builder) == public_keys(URL_A, URL_C)


def test_without_a_parquet_snapshot_the_json_lines_one_is_loaded(mirror, publish, builder, signing_key):
    hold(1, URL_A, image_sha256=SHA_A, phash=0x0123_4567_89AB_CDEF)
    publish()
    mirror.sync()
    manifest = mirror.manifest("partner")
    del manifest["snapshot_parquet"]  # an older server's release
    mirror.serve_manifest(manifest, tier="partner")
    code, out, err = builder("pull", "--feed", mirror.base("partner"), "--pubkey", signing_key.public_key.to_base64())
    assert code == 0, err
    assert mirror.server.hits["/feed/v1/partner/snapshot-000001.jsonl.gz"] == 1
    loaded = state.load(builder.state_dir)
    assert loaded.phashes().tolist() == [0x0123_4567_89AB_CDEF] and loaded.sha256_bytes == bytes.fromhex(SHA_A)


def test_a_partner_parquet_snapshot_gives_the_same_state_as_its_json_lines(
    mirror, publish, builder, signing_key, tmp_path
):
    hold(1, URL_A, image_sha256=SHA_A, phash=0x0123_4567_89AB_CDEF, pdq=(1 << 255) | 7, pdq_quality=90)
    hold(2, URL_B, phash=0xFFFF_0000_FFFF_0000)
    publish()
    mirror.sync()
    pubkey = signing_key.public_key.to_base64()
    assert builder("pull", "--feed", mirror.base("partner"), "--pubkey", pubkey)[0] == 0
    from_parquet = state.load(builder.state_dir)
    manifest = mirror.manifest("partner")
    del manifest["snapshot_parquet"]
    mirror.serve_manifest(manifest, tier="partner")
    other = tmp_path / "state-jsonl"
    assert builder("pull", "--feed", mirror.base("partner"), "--pubkey", pubkey, "--state", other)[0] == 0
    from_jsonl = state.load(other)
    for name in ("url_bytes", "sha256_bytes", "phash_bytes", "pdq_bytes"):
        assert getattr(from_parquet, name) == getattr(from_jsonl, name), name
    assert from_parquet.pdqs().shape == (1, 4)
    parquet_entries = list(state.read_entries(builder.state_dir / from_parquet.current.generation))
    assert parquet_entries == list(state.read_entries(other / from_jsonl.current.generation))


def test_pull_after_skipping_versions_takes_the_snapshot(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    holds.release_hold(holder="item:1")
    publish()
    mirror.sync()
    code, out, err = builder("pull", "--feed", mirror.base())
    assert code == 0, err
    assert "pulled version 3 (snapshot): 20 entries" in out
    assert mirror.server.hits["/feed/v1/public/delta-000003.jsonl.gz"] == 0
    assert keys_in_state(builder) == public_keys(URL_B, URL_C)


def test_an_unchanged_feed_is_a_no_op(first, builder, mirror):
    code, out, err = builder("pull", "--feed", mirror.base())
    assert (code, err) == (0, "")
    assert out.startswith("already at version 1")


def test_an_empty_delta_reuses_the_snapshot_file(first, builder, mirror, publish):
    publish()  # nothing changed: a re-signed release pointing to snapshot 1
    mirror.sync()
    code, out, err = builder("pull", "--feed", mirror.base())
    assert code == 0, err
    assert "pulled version 2 (delta): 20 entries" in out


def test_the_stored_manifest_verifies_with_stock_minisign(first, builder, tmp_path, signing_key):
    minisign_tool = pytest.importorskip("shutil").which("minisign")
    if minisign_tool is None:
        pytest.skip("Debian's minisign is not installed")
    import subprocess

    current = state.read_current(builder.state_dir)
    folder = builder.state_dir / current.generation
    (tmp_path / "key.pub").write_text(signing_key.public_key.to_file())
    result = subprocess.run(
        [minisign_tool, "-V", "-p", str(tmp_path / "key.pub"), "-m", str(folder / "manifest.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "version:1" in result.stdout


# --- Refused --------------------------------------------------------------------------------------------


def test_refuses_a_first_pull_without_a_key(mirror, builder, publish):
    hold(1, URL_A)
    publish()
    mirror.sync()
    code, out, err = builder("pull", "--feed", mirror.base())
    assert code == 1 and "needs --pubkey" in err
    assert not (builder.state_dir / state.CURRENT).exists()


def test_refuses_a_manifest_changed_after_signing(first, builder, mirror, publish):
    publish()
    mirror.sync()
    body = mirror.file("manifest.json").replace(b'"version":2', b'"version":3')
    mirror.serve("manifest.json", body)
    assert_refused(builder, mirror, "bad manifest signature")


def test_refuses_a_manifest_signed_by_another_key(first, builder, mirror, publish):
    publish()
    mirror.sync()
    mirror.serve_manifest(mirror.manifest(), key=signing.generate())
    assert_refused(builder, mirror, "which is not trusted")


def test_refuses_a_first_pull_with_the_wrong_pinned_key(mirror, builder, publish):
    hold(1, URL_A)
    publish()
    mirror.sync()
    code, out, err = builder("pull", "--feed", mirror.base(), "--pubkey", signing.generate().public_key.to_base64())
    assert code == 1 and "which is not trusted" in err and "(no state kept)" in err
    assert not (builder.state_dir / state.CURRENT).exists()


def test_refuses_another_pinned_key_for_an_existing_state(first, builder, mirror):
    other = signing.generate().public_key.to_base64()
    assert_refused(builder, mirror, "is not the key this state trusts", pubkey=other)


def test_refuses_a_rollback(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    mirror.sync()
    old_manifest, old_signature = mirror.file("manifest-000001.json"), mirror.file("manifest-000001.json.minisig")
    assert builder("pull", "--feed", mirror.base())[0] == 0
    mirror.serve("manifest.json", old_manifest)
    mirror.serve("manifest.json.minisig", old_signature)
    assert_refused(builder, mirror, "rollback: the feed offers version 1, older than the accepted 2", version=2)


def test_refuses_another_manifest_for_the_accepted_version(first, builder, mirror):
    manifest = mirror.manifest()
    manifest["created"] = "2020-01-01T00:00:00Z"
    mirror.serve_manifest(manifest)
    assert_refused(builder, mirror, "a different manifest for the accepted version 1")


def test_refuses_an_expired_manifest(first, builder, mirror, publish, settings):
    settings.OPTOUT_RELEASE_TTL_HOURS = -1
    publish()
    mirror.sync()
    assert_refused(builder, mirror, "expired at")


def test_refuses_a_broken_previous_chain(first, builder, mirror, publish):
    publish()
    mirror.sync()
    manifest = mirror.manifest()
    manifest["previous"]["sha256"] = "0" * 64
    mirror.serve_manifest(manifest)
    assert_refused(builder, mirror, "a broken chain")


def test_refuses_an_artifact_whose_sha256_differs(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    mirror.sync()
    # Another release's real delta, padded to the same size: valid gzip, wrong bytes.
    real = mirror.file("delta-000002.jsonl.gz")
    other = gzip.compress(b"", mtime=0)
    mirror.serve("delta-000002.jsonl.gz", other + b"\0" * (len(real) - len(other)))
    err = assert_refused(builder, mirror, "does not have the sha256 the manifest names")
    assert "delta-000002.jsonl.gz" in err


def test_refuses_an_artifact_larger_than_the_manifest_says(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    mirror.sync()
    manifest = mirror.manifest()
    manifest["delta"]["bytes"] -= 1
    mirror.serve_manifest(manifest)
    assert_refused(builder, mirror, "is larger than the")


def test_refuses_an_artifact_shorter_than_the_manifest_says(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    mirror.sync()
    mirror.serve("delta-000002.jsonl.gz", mirror.file("delta-000002.jsonl.gz")[:-5])
    assert_refused(builder, mirror, "but the manifest says")


def test_refuses_an_endless_manifest(first, builder, mirror):
    mirror.server.add_endless("/feed/v1/public/manifest.json", prefix=b"{", content_type="application/json")
    assert_refused(builder, mirror, "endless data")


def test_refuses_an_endless_artifact(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    mirror.sync()
    mirror.server.add_endless("/feed/v1/public/delta-000002.jsonl.gz", prefix=b"\x1f\x8b")
    assert_refused(builder, mirror, "is larger than the")


def test_refuses_a_state_sha256_that_does_not_match_after_applying(first, builder, mirror, publish):
    hold(3, URL_C)
    publish()
    mirror.sync()
    manifest = mirror.manifest()
    manifest["state_sha256"] = hashlib.sha256(f"{url_sha256(URL_A)}\n".encode()).hexdigest()
    mirror.serve_manifest(manifest)
    assert_refused(builder, mirror, "not the manifest's state_sha256")


def test_refuses_a_trusted_comment_that_does_not_match(first, builder, mirror, publish, signing_key):
    publish()
    mirror.sync()
    body = mirror.file("manifest.json")
    signature = signing_key.sign(body, trusted_comment="feed:optout-public version:9 expires:2099-01-01T00:00:00Z")
    mirror.serve("manifest.json.minisig", signature.encode())
    assert_refused(builder, mirror, "trusted comment does not match")


def test_refuses_an_artifact_path_outside_the_feed(first, builder, mirror, publish):
    publish()
    mirror.sync()
    manifest = mirror.manifest()
    manifest["delta"]["path"] = "../partner/delta-000002.jsonl.gz"
    mirror.serve_manifest(manifest)
    assert_refused(builder, mirror, "bad path")


def test_refuses_the_other_tier_in_place_of_this_one(first, builder, mirror, publish):
    publish()
    mirror.sync()
    mirror.serve("manifest.json", mirror.file("manifest.json", "partner"))
    mirror.serve("manifest.json.minisig", mirror.file("manifest.json.minisig", "partner"))
    assert_refused(builder, mirror, "this state follows feed 'optout-public'")


def test_an_unreachable_feed_keeps_the_state(first, builder, mirror):
    mirror.server.add("/feed/v1/public/manifest.json", b"oops", status=503)
    assert_refused(builder, mirror, "HTTP 503")


# --- Key rotation ---------------------------------------------------------------------------------------


def test_follows_a_key_rotation_announced_by_a_verified_manifest(
    mirror, publish, builder, signing_key, settings, tmp_path
):
    new_key = signing.generate()
    (tmp_path / "next.pub").write_text(new_key.public_key.to_file())
    settings.OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE = str(tmp_path / "next.pub")
    hold(1, URL_A)
    publish()
    mirror.sync()
    assert json.loads(mirror.file("manifest.json"))["next_key"]["key_id"] == new_key.public_key.key_id_hex
    code, out, err = builder("pull", "--feed", mirror.base(), "--pubkey", signing_key.public_key.to_base64())
    assert code == 0, err
    code, out, _ = builder("status")
    assert f"key id:   {signing_key.public_key.key_id_hex} (next: {new_key.public_key.key_id_hex})" in out

    # The new key takes over.
    (tmp_path / "new.key").write_text(new_key.to_file())
    settings.OPTOUT_SIGNING_KEY_FILE = str(tmp_path / "new.key")
    settings.OPTOUT_SIGNING_NEXT_PUBLIC_KEY_FILE = ""
    hold(2, URL_B)
    publish()
    mirror.sync()
    code, out, err = builder("pull", "--feed", mirror.base())
    assert code == 0, err
    assert f"now trusting key {new_key.public_key.key_id_hex}" in out
    assert "pulled version 2 (delta)" in out
    current = state.read_current(builder.state_dir)
    assert current.public_key == new_key.public_key.to_base64() and current.next_key is None

    # The old key is retired: a manifest it signs is refused.
    publish()
    mirror.sync()
    mirror.serve_manifest(mirror.manifest(), key=signing_key)
    assert_refused(builder, mirror, f"signed by key {signing_key.public_key.key_id_hex}", version=2)


def test_a_key_never_announced_is_not_followed(first, builder, mirror, publish, settings, tmp_path):
    stranger = signing.generate()
    (tmp_path / "stranger.key").write_text(stranger.to_file())
    settings.OPTOUT_SIGNING_KEY_FILE = str(tmp_path / "stranger.key")
    publish()
    mirror.sync()
    assert_refused(builder, mirror, "which is not trusted")
