"""Bit-level conversions between hash representations. Pure: no Django.

Conventions used across the project (the database, the feed and the client):

- A pHash is an unsigned 64-bit integer; its hex form is 16 lower-case digits,
  the same string ``str(imagehash.phash(img))`` gives.
- A PDQ hash is an unsigned 256-bit integer; its hex form is 64 lower-case
  digits, most significant first.
- The database stores 64-bit words as *signed* BIGINT (two's complement);
  PDQ is stored as four such words, most significant first.
"""

import re

_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX64 = (1 << 64) - 1
MAX256 = (1 << 256) - 1


class BadHash(ValueError):
    """A hash string that is not of the expected form."""


def to_signed64(value: int) -> int:
    if not 0 <= value <= MAX64:
        raise BadHash("not an unsigned 64-bit value")
    return value - (1 << 64) if value >> 63 else value


def from_signed64(value: int) -> int:
    return value & MAX64


def phash_from_hex(text: str) -> int:
    text = text.strip().lower()
    if not _HEX16.fullmatch(text):
        raise BadHash("a pHash is 16 hexadecimal digits")
    return int(text, 16)


def phash_to_hex(value: int) -> str:
    return f"{value:016x}"


def pdq_from_hex(text: str) -> int:
    text = text.strip().lower()
    if not _HEX64.fullmatch(text):
        raise BadHash("a PDQ hash is 64 hexadecimal digits")
    return int(text, 16)


def pdq_to_hex(value: int) -> str:
    return f"{value:064x}"


def pdq_to_words(value: int) -> tuple[int, int, int, int]:
    """The four signed 64-bit database words of a 256-bit PDQ hash, most significant first."""
    return tuple(to_signed64((value >> shift) & MAX64) for shift in (192, 128, 64, 0))


def pdq_from_words(words) -> int:
    value = 0
    for word in words:
        value = (value << 64) | from_signed64(word)
    return value


def sha256_from_hex(text: str) -> str:
    text = text.strip().lower()
    if not _HEX64.fullmatch(text):
        raise BadHash("a sha256 is 64 hexadecimal digits")
    return text


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
