"""The client's deadlines, its lock file, and the key pinned outside the state (issue 12, item 6)."""

import json
import time

import pytest

from optout.blocklist import holds, signing
from optout.client import download, minisign, state
from optout.client.canonical import url_sha256
from optout.client.pull import PullError, pull

pytestmark = pytest.mark.django_db

URL_A = "https://images.example.org/private/a.jpg"
URL_C = "https://cdn.example.net/c.png"


@pytest.fixture
def released(mirror, publish):
    holds.hold(holder="item:1", url_sha256=url_sha256(URL_A))
    publish()
    mirror.sync()
    return mirror


def test_one_deadline_covers_headers_dripped_a_byte_at_a_time(released, builder, signing_key):
    released.server.add_stall("/feed/v1/public/manifest.json", during="headers", interval=0.2)
    started = time.monotonic()
    with pytest.raises(PullError, match="took longer than 1 s"):
        pull(released.base(), state_dir=builder.state_dir, pubkey=signing_key.public_key.to_base64(), timeout=1)
    # The stall never ends, and each byte comes well within a read timeout: only the deadline stops it.
    assert time.monotonic() - started < 20
    assert not (builder.state_dir / state.CURRENT).exists()


def test_an_artifact_dripped_slowly_is_cut_off_by_its_deadline(image_server):
    image_server.add_stall("/feed/v1/public/delta-000002.jsonl.gz", prefix=b"\x1f\x8b", interval=0.05)
    url = image_server.url("/feed/v1/public/delta-000002.jsonl.gz")
    started = time.monotonic()
    with pytest.raises(PullError, match="delta-000002.jsonl.gz took longer than 1 s"):
        download.fetch(url, cap=1 << 20, token=None, timeout=30, deadline=download.artifact_deadline(1000, 1))
    assert time.monotonic() - started < 20  # each byte comes well within the 30 s read timeout


def test_pull_gives_an_artifact_the_deadline_of_its_size(released, builder, signing_key, monkeypatch):
    deadlines = []
    real_fetch = download.fetch

    def recording_fetch(url, **kwargs):
        deadlines.append((url.rsplit("/", 1)[1], kwargs["deadline"]))
        return real_fetch(url, **kwargs)

    monkeypatch.setattr("optout.client.pull.fetch", recording_fetch)
    pull(released.base(), state_dir=builder.state_dir, pubkey=signing_key.public_key.to_base64(), timeout=7)
    size = released.manifest()["snapshot_parquet"]["bytes"]
    assert deadlines == [
        ("manifest.json", 7),
        ("manifest.json.minisig", 7),
        ("snapshot-000001.parquet", download.artifact_deadline(size, 7)),
    ]


def test_an_artifacts_deadline_grows_with_its_declared_size():
    assert download.artifact_deadline(0, 30) == 30
    big = download.artifact_deadline(100 * 1024 * 1024, 30)
    assert big == 30 + 100 * 1024 * 1024 / download.ARTIFACT_MIN_RATE
    assert big > download.artifact_deadline(1024 * 1024, 30) > 30


def test_the_lock_file_is_never_opened_through_a_symlink(released, builder, signing_key, tmp_path):
    builder.state_dir.mkdir()
    target = tmp_path / "elsewhere"
    (builder.state_dir / "lock").symlink_to(target)
    code, out, err = builder("pull", "--feed", released.base(), "--pubkey", signing_key.public_key.to_base64())
    assert code == 1 and "cannot open the lock" in err
    assert not target.exists()
    assert not (builder.state_dir / state.CURRENT).exists()


def test_the_first_pull_pins_the_key_outside_the_state_and_prints_its_fingerprint(
    released, builder, signing_key, trust_dir
):
    code, out, err = builder("pull", "--feed", released.base(), "--pubkey", signing_key.public_key.to_base64())
    assert code == 0, err
    fingerprint = minisign.parse_public_key(signing_key.public_key.to_base64()).fingerprint
    assert fingerprint.startswith("SHA256:") and len(fingerprint) == 7 + 64
    assert f"pinned key {signing_key.public_key.key_id_hex} (fingerprint {fingerprint})" in out
    pin = state.pin_path(builder.state_dir)
    assert pin.parent == trust_dir and not pin.is_relative_to(builder.state_dir)
    assert json.loads(pin.read_bytes())["public_key"] == signing_key.public_key.to_base64()
    code, out, err = builder("pull", "--feed", released.base())
    assert code == 0 and "pinned key" not in out and out.startswith("already at version 1")


def test_a_rewritten_current_json_cannot_swap_in_another_key(released, builder, signing_key):
    assert builder("pull", "--feed", released.base(), "--pubkey", signing_key.public_key.to_base64())[0] == 0
    # Whoever can write the state re-signs the stored manifest with a key of their own and records it,
    # so that every file matches what current.json says.
    attacker = signing.generate()
    current = state.read_current(builder.state_dir)
    folder = builder.state_dir / current.generation
    body = (folder / "manifest.json").read_bytes()
    (folder / "manifest.json.minisig").write_text(
        attacker.sign(body, trusted_comment=(folder / "manifest.json.minisig").read_text().split("\n")[2][17:])
    )
    current.files["manifest.json.minisig"] = state.sha256_file(folder / "manifest.json.minisig")
    current.key_id, current.public_key = attacker.public_key.key_id_hex, attacker.public_key.to_base64()
    state.write_atomic(builder.state_dir / state.CURRENT, current.to_json())

    for command in (["check", URL_A], ["status"]):
        code, out, err = builder(*command)
        assert code == 1
        assert f"signed by key {attacker.public_key.key_id_hex}, which this state never pinned" in err + out


def test_a_state_without_its_pin_is_refused_until_pulled_with_a_key(released, builder, signing_key):
    assert builder("pull", "--feed", released.base(), "--pubkey", signing_key.public_key.to_base64())[0] == 0
    state.pin_path(builder.state_dir).unlink()
    code, out, err = builder("check", URL_A)
    assert (code, out) == (1, "") and "no key is pinned for" in err
    code, out, err = builder("pull", "--feed", released.base())
    assert code == 1 and "no key is pinned for" in err
    code, out, err = builder("pull", "--feed", released.base(), "--pubkey", signing_key.public_key.to_base64())
    assert code == 0, err
    assert builder("check", URL_A)[0] == 3
