"""Verifying minisign signatures, as ``minisign -V`` does. Needs only PyNaCl.

The one home of minisign's public-key and signature formats: the server's signing
module (``optout.blocklist.signing``) imports them from here, since the client runs
where only this package is installed. The formats::

    public key:  [untrusted comment line] base64("Ed" || key_id (8) || ed25519_pk (32))
    .minisig:    untrusted comment: <free text>
                 base64(alg (2) || key_id (8) || signature (64))
                 trusted comment: <one line>
                 base64(ed25519_sign(signature || trusted_comment))

``alg`` is ``"ED"`` (the data prehashed with BLAKE2b-512, minisign's default) or
``"Ed"`` (legacy: Ed25519 over the data itself).
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

TRUSTED_PREFIX = "trusted comment: "
UNTRUSTED_PREFIX = "untrusted comment: "
KEY_ALGORITHM = b"Ed"


class BadKey(ValueError):
    """Text that is not a minisign key (or, for a secret key, a wrong password)."""


class BadSignature(ValueError):
    """A signature that is malformed or does not verify."""


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes  # 8 bytes, as stored (little-endian)
    key: bytes  # 32-byte Ed25519 public key

    @property
    def key_id_hex(self) -> str:
        """The key id as minisign prints it."""
        return self.key_id[::-1].hex().upper()

    def to_base64(self) -> str:
        return base64.b64encode(KEY_ALGORITHM + self.key_id + self.key).decode("ascii")

    def to_file(self) -> str:
        """The content of a ``minisign.pub`` file."""
        return f"{UNTRUSTED_PREFIX}minisign public key {self.key_id_hex}\n{self.to_base64()}\n"

    @property
    def fingerprint(self) -> str:
        """``SHA256:`` and the hex sha256 of the key's 42 bytes: what a builder compares out of band."""
        return "SHA256:" + hashlib.sha256(b"Ed" + self.key_id + self.key).hexdigest()


def parse_public_key(text: str) -> PublicKey:
    """A public key from its base64 line or a ``.pub`` file's content; raises ``BadKey``."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith(UNTRUSTED_PREFIX):
        lines = lines[1:]
    if len(lines) != 1:
        raise BadKey("a public key is one base64 line, optionally after a comment line")
    try:
        raw = base64.b64decode(lines[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("the public key is not base64") from None
    if len(raw) != 42 or raw[:2] != KEY_ALGORITHM:
        raise BadKey("not an Ed25519 minisign public key")
    return PublicKey(key_id=raw[2:10], key=raw[10:])


@dataclass(frozen=True)
class Signature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes

    @property
    def key_id_hex(self) -> str:
        return self.key_id[::-1].hex().upper()


def parse_signature(text: str) -> Signature:
    """The parts of a ``.minisig``; raises ``BadSignature``."""
    lines = text.split("\n")
    if len(lines) < 4 or not lines[0].startswith(UNTRUSTED_PREFIX) or not lines[2].startswith(TRUSTED_PREFIX):
        raise BadSignature("not a minisign signature")
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
        global_signature = base64.b64decode(lines[3].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature("the signature is not base64") from None
    if len(raw) != 74 or len(global_signature) != 64:
        raise BadSignature("the signature has the wrong length")
    return Signature(
        algorithm=raw[:2],
        key_id=raw[2:10],
        signature=raw[10:],
        trusted_comment=lines[2][len(TRUSTED_PREFIX) :].rstrip("\r"),
        global_signature=global_signature,
    )


def verify(data: bytes, signature: Signature, public_key: PublicKey) -> str:
    """Check ``signature`` over ``data``; returns the trusted comment or raises ``BadSignature``."""
    if signature.key_id != public_key.key_id:
        raise BadSignature(f"signed with key {signature.key_id_hex}, not with {public_key.key_id_hex}")
    if signature.algorithm == b"ED":
        message = hashlib.blake2b(data, digest_size=64).digest()
    elif signature.algorithm == b"Ed":
        message = data
    else:
        raise BadSignature("unknown signature algorithm")
    verify_key = nacl.signing.VerifyKey(public_key.key)
    try:
        verify_key.verify(message, signature.signature)
        verify_key.verify(signature.signature + signature.trusted_comment.encode("utf-8"), signature.global_signature)
    except nacl.exceptions.BadSignatureError:
        raise BadSignature("the signature does not verify") from None
    return signature.trusted_comment
