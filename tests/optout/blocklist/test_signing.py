"""Our minisign implementation against the stock ``minisign`` tool (Debian's package)."""

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from optout.blocklist import signing
from tests.conftest import REQUIRE_SERVICES

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(
    not MINISIGN and not REQUIRE_SERVICES, reason="needs the minisign tool (apt-get install minisign)"
)
DATA = b'{"feed":"optout-public","version":7}'
COMMENT = "feed:optout-public version:7 expires:2030-01-01T00:00:00Z"


def stock_verify(tmp_path: Path, data: bytes, signature: str, public_key: signing.PublicKey):
    (tmp_path / "m.json").write_bytes(data)
    (tmp_path / "m.json.minisig").write_text(signature)
    return subprocess.run(
        [MINISIGN or "minisign", "-V", "-P", public_key.to_base64(), "-m", "m.json", "-x", "m.json.minisig"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def key():
    return signing.generate()


@needs_minisign
def test_stock_minisign_verifies_our_signature_and_trusted_comment(tmp_path, key):
    result = stock_verify(tmp_path, DATA, key.sign(DATA, trusted_comment=COMMENT), key.public_key)
    assert result.returncode == 0, result.stderr
    assert f"Trusted comment: {COMMENT}" in result.stdout


@needs_minisign
@pytest.mark.parametrize("part", ["data", "comment", "signature", "global signature", "key"])
def test_stock_minisign_rejects_tampering(tmp_path, key, part):
    data, signature, public_key = DATA, key.sign(DATA, trusted_comment=COMMENT), key.public_key
    lines = signature.split("\n")
    if part == "data":
        data = DATA.replace(b"7", b"8")
    elif part == "comment":
        lines[2] = lines[2].replace("version:7", "version:8")
    elif part == "signature":
        raw = bytearray(base64.b64decode(lines[1]))
        raw[20] ^= 1
        lines[1] = base64.b64encode(raw).decode()
    elif part == "global signature":
        raw = bytearray(base64.b64decode(lines[3]))
        raw[0] ^= 1
        lines[3] = base64.b64encode(raw).decode()
    else:
        public_key = signing.PublicKey(key_id=key.public_key.key_id, key=signing.generate().public_key.key)
    signature = "\n".join(lines)
    assert stock_verify(tmp_path, data, signature, public_key).returncode != 0
    with pytest.raises(signing.BadSignature):
        signing.verify(data, signature, public_key)


def test_our_verifier_accepts_our_signature(key):
    verified = signing.verify(DATA, key.sign(DATA, trusted_comment=COMMENT), key.public_key)
    assert verified.trusted_comment == COMMENT


def test_signature_uses_the_prehashed_algorithm_and_key_id(key):
    line = key.sign(DATA, trusted_comment=COMMENT).split("\n")[1]
    raw = base64.b64decode(line)
    assert raw[:2] == b"ED"
    assert raw[2:10] == key.public_key.key_id


def test_trusted_comment_must_be_one_line(key):
    with pytest.raises(ValueError, match="one line"):
        key.sign(DATA, trusted_comment="a\nb")


@needs_minisign
def test_stock_minisign_signs_with_our_unencrypted_and_encrypted_keys(tmp_path, key):
    (tmp_path / "plain.key").write_text(key.to_file())
    (tmp_path / "secret.key").write_text(key.to_file(password=b"correct horse"))
    (tmp_path / "m").write_bytes(DATA)
    for name, stdin in [("plain.key", "\n"), ("secret.key", "correct horse\n")]:
        signed = subprocess.run(
            [MINISIGN, "-S", "-s", name, "-m", "m", "-t", "hello"],
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert signed.returncode == 0, signed.stderr
        signature = (tmp_path / "m.minisig").read_text()
        assert signing.verify(DATA, signature, key.public_key).trusted_comment == "hello"


@needs_minisign
def test_we_load_a_key_the_stock_tool_generated(tmp_path):
    generated = subprocess.run(
        [MINISIGN, "-G", "-W", "-p", "k.pub", "-s", "k.key"], cwd=tmp_path, capture_output=True, timeout=30
    )
    assert generated.returncode == 0, generated.stderr
    loaded = signing.load_secret_key((tmp_path / "k.key").read_text())
    assert loaded.public_key == signing.parse_public_key((tmp_path / "k.pub").read_text())
    assert stock_verify(tmp_path, DATA, loaded.sign(DATA, trusted_comment="x"), loaded.public_key).returncode == 0


def test_wrong_or_missing_password_is_refused(key):
    text = key.to_file(password=b"right")
    with pytest.raises(signing.BadKey, match="wrong password"):
        signing.load_secret_key(text, password=b"wrong")
    with pytest.raises(signing.BadKey, match="password is needed"):
        signing.load_secret_key(text)
    assert signing.load_secret_key(text, password=b"right").public_key == key.public_key


def test_public_key_file_round_trips(key):
    text = key.public_key.to_file()
    assert text.startswith(f"untrusted comment: minisign public key {key.public_key.key_id_hex}\n")
    assert signing.parse_public_key(text) == key.public_key
    assert signing.parse_public_key(key.public_key.to_base64()) == key.public_key
    with pytest.raises(signing.BadKey):
        signing.parse_public_key("RWQ" + "A" * 10)


def test_generate_signing_key_writes_a_private_file_outside_the_repository(tmp_path, settings):
    target = tmp_path / "keys" / "minisign.key"
    password_file = tmp_path / "password"
    password_file.write_text("s3cret password\n")
    call_command("generate_signing_key", output=str(target), password_file=str(password_file))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    loaded = signing.read_secret_key_file(target, password=b"s3cret password")
    assert signing.parse_public_key((tmp_path / "keys" / "minisign.pub").read_text()) == loaded.public_key
    with pytest.raises(CommandError, match="exists"):
        call_command("generate_signing_key", output=str(target))
    with pytest.raises(CommandError, match="inside the repository"):
        call_command("generate_signing_key", output=str(Path(settings.BASE_DIR) / "optout" / "leak.key"))
    assert not (Path(settings.BASE_DIR) / "optout" / "leak.key").exists()
