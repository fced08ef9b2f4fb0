"""Image signals: bytes in, ``ImageSignals`` out.

Every image (an upload, a fetched URL, a dataset row) becomes the same three signals: a 64-bit pHash
(``imagehash``), a 256-bit PDQ hash with its quality, and the sha256 of the exact bytes.

Speed. The naive pipeline (``compute_signals_naive``: full decode, then ``imagehash.phash`` and
``pdqhash.compute``) spends most of its time in PDQ's box filters over the full-resolution image.
``compute_signals`` decodes a reduced image instead, keeping the shorter side at least
``REDUCE_MIN_SIDE`` pixels, and applies each library's filter geometry over the reduced pixels
(``kernels``). Without reduction the PDQ bits equal ``pdqhash``'s exactly (the tests check it);
``bench/signals.py`` prints speed and agreement with the naive pipeline.
"""

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from optout.imaging.decode import (
    ORIENTATION,
    bounded_decode,
    exif_orientation,
    flatten,
    load_pixels,
    luma_of,
    open_image,
)
from optout.imaging.descriptor import DESCRIPTOR_KEY, PDQ_QUALITY_FLOOR, PHASH_HIGHFREQ, PHASH_SIZE, REDUCE_MIN_SIDE
from optout.imaging.hashbits import (
    MAX64,
    MAX256,
    BadHash,
    pdq_from_hex,
    pdq_to_hex,
    phash_from_hex,
    phash_to_hex,
    sha256_from_hex,
)
from optout.imaging.kernels import SHORT_BLOCK_FIRST, jarosz_kernel, lanczos_kernel, pdq_from_buffer, resample


@dataclass(frozen=True)
class ImageSignals:
    """The signals of one image. ``width``/``height`` (after EXIF orientation) are None for client-sent signals.

    ``hashed_by_server`` says this process computed the signals from the bytes themselves. Signals a device
    sent, or a dataset file listed, are claims: anyone can copy a public image sha256 (our own public feed
    and img2dataset metadata publish them), so only a sha256 the server computed on both sides proves
    identical bytes.
    """

    phash: int
    pdq: int | None
    pdq_quality: int
    sha256: str | None  # None for a dataset row whose image bytes were never seen
    width: int | None = None
    height: int | None = None
    descriptor: str = DESCRIPTOR_KEY
    hashed_by_server: bool = False

    def __post_init__(self):
        if not (isinstance(self.phash, int) and 0 <= self.phash <= MAX64):
            raise BadHash("phash: not an unsigned 64-bit value")
        if self.pdq is not None and not (isinstance(self.pdq, int) and 0 <= self.pdq <= MAX256):
            raise BadHash("pdq: not an unsigned 256-bit value")
        if isinstance(self.pdq_quality, bool) or not isinstance(self.pdq_quality, int):
            raise BadHash("pdq_quality: not an integer")
        if not 0 <= self.pdq_quality <= 100:
            raise BadHash("pdq_quality: not between 0 and 100")
        if self.pdq is not None and self.pdq_quality < PDQ_QUALITY_FLOOR:
            raise BadHash(f"pdq: kept although its quality is below {PDQ_QUALITY_FLOOR}")
        if self.sha256 is not None and sha256_from_hex(self.sha256) != self.sha256:
            raise BadHash("sha256: not 64 lower-case hexadecimal digits")

    def to_dict(self) -> dict:
        """The shape the API accepts: ``{"phash": hex16, "pdq": hex64 | None, "pdq_quality": int, "sha256": hex64}``."""
        return {
            "phash": phash_to_hex(self.phash),
            "pdq": None if self.pdq is None else pdq_to_hex(self.pdq),
            "pdq_quality": self.pdq_quality,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data) -> "ImageSignals":
        """Signals a client computed itself. Raises ``BadHash`` (a ``ValueError``) naming the bad field.

        Exactly the four keys of ``to_dict``; ``pdq`` may be null. A PDQ hash below the quality floor
        is discarded, as ours are.
        """
        if not isinstance(data, dict):
            raise BadHash("signals: expected an object")
        expected = {"phash", "pdq", "pdq_quality", "sha256"}
        if set(data) != expected:
            missing, unknown = sorted(expected - set(data)), sorted(map(str, set(data) - expected))
            raise BadHash(f"signals: missing {missing}, unknown {unknown}")
        for name in ("phash", "sha256"):
            if not isinstance(data[name], str):
                raise BadHash(f"{name}: expected a hexadecimal string")
        if data["pdq"] is not None and not isinstance(data["pdq"], str):
            raise BadHash("pdq: expected a hexadecimal string or null")
        quality = data["pdq_quality"]
        if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
            raise BadHash("pdq_quality: expected an integer from 0 to 100")
        try:
            phash = phash_from_hex(data["phash"])
        except BadHash as exc:
            raise BadHash(f"phash: {exc}") from None
        try:
            pdq = None if data["pdq"] is None else pdq_from_hex(data["pdq"])
        except BadHash as exc:
            raise BadHash(f"pdq: {exc}") from None
        try:
            sha256 = sha256_from_hex(data["sha256"])
        except BadHash as exc:
            raise BadHash(f"sha256: {exc}") from None
        if quality < PDQ_QUALITY_FLOOR:
            pdq = None
        return cls(phash=phash, pdq=pdq, pdq_quality=quality, sha256=sha256)


@dataclass(frozen=True)
class Decoded:
    """A decoded picture as the kernels read it: float luma, reduced, upright, and its full-size geometry.

    ``luma`` has ``ceil(side / scale)`` pixels per side; ``short_x``/``short_y`` say whether the short
    last reduction block of the stored picture came first after the EXIF turn (``SHORT_BLOCK_FIRST``).
    """

    luma: np.ndarray
    width: int
    height: int
    scale: int
    short_x: bool
    short_y: bool
    sha256: str


@bounded_decode
def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Decoded:
    """Decode hostile bytes to reduced upright luma. Raises ``ImageRejected`` for anything we will not decode."""
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    width, height = image.size
    scale = 1
    if image.format in ("JPEG", "MPO"):
        drafted = image.draft("RGB", (REDUCE_MIN_SIDE, REDUCE_MIN_SIDE))
        if drafted:
            scale = round(width / drafted[1][2])
    reduce_by = max(1, min(width, height) // REDUCE_MIN_SIDE) if scale == 1 else 1
    load_pixels(image, reduce_by=reduce_by)
    orientation = exif_orientation(image)
    flat = flatten(image, reduce_by=reduce_by)
    scale *= reduce_by
    if orientation != 1:
        flat = flat.transpose(ORIENTATION[orientation])
        if orientation in (5, 6, 7, 8):
            width, height = height, width
    short_x, short_y = SHORT_BLOCK_FIRST[orientation]
    luma = luma_of(flat)
    return Decoded(luma, width, height, scale, short_x, short_y, hashlib.sha256(data).hexdigest())


def grids_of(decoded: Decoded) -> tuple[np.ndarray, np.ndarray]:
    """The two hash inputs of a decoded picture: pHash's 32x32 Lanczos image and PDQ's 64x64 buffer."""
    luma, scale = decoded.luma, decoded.scale
    rows, cols = luma.shape
    small = resample(
        luma,
        lanczos_kernel(decoded.height, scale, rows, decoded.short_y),
        lanczos_kernel(decoded.width, scale, cols, decoded.short_x),
    )
    buffer64 = resample(
        luma,
        jarosz_kernel(decoded.height, scale, rows, decoded.short_y),
        jarosz_kernel(decoded.width, scale, cols, decoded.short_x),
    )
    return small, buffer64


def phash_from_small(small: np.ndarray) -> int:
    """imagehash.phash of the 32x32 float image, rounded to 8 bits as Pillow would."""
    image = Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8), "L")
    return int(str(imagehash.phash(image, hash_size=PHASH_SIZE, highfreq_factor=PHASH_HIGHFREQ)), 16)


def signals_from_grids(
    small: np.ndarray, buffer64: np.ndarray, *, sha256: str | None, width: int | None = None, height: int | None = None
) -> ImageSignals:
    pdq, quality = pdq_from_buffer(buffer64)
    return ImageSignals(
        phash=phash_from_small(small),
        pdq=pdq if quality >= PDQ_QUALITY_FLOOR else None,
        pdq_quality=quality,
        sha256=sha256,
        width=width,
        height=height,
        hashed_by_server=True,
    )


def signals_of(decoded: Decoded) -> ImageSignals:
    small, buffer64 = grids_of(decoded)
    return signals_from_grids(small, buffer64, sha256=decoded.sha256, width=decoded.width, height=decoded.height)


def compute_signals(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageSignals:
    """The signals of an image. Raises ``ImageRejected`` for anything we will not decode."""
    return signals_of(decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels))


def compute_signals_naive(data: bytes, *, max_bytes: int = 1 << 30, max_pixels: int = 1 << 28) -> ImageSignals:
    """The reference pipeline: full decode, then ``imagehash.phash`` and ``pdqhash.compute`` (tests, bench)."""
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    load_pixels(image, budget=None)  # trusted inputs only: its full-size float work is the point
    orientation = exif_orientation(image)
    rgb = flatten(image).convert("RGB")
    if orientation != 1:
        rgb = rgb.transpose(ORIENTATION[orientation])
    phash = int(str(imagehash.phash(rgb, hash_size=PHASH_SIZE, highfreq_factor=PHASH_HIGHFREQ)), 16)
    vector, quality = pdqhash.compute(np.asarray(rgb))
    return ImageSignals(
        phash=phash,
        pdq=pdq_from_pdqhash_vector(vector) if quality >= PDQ_QUALITY_FLOOR else None,
        pdq_quality=int(quality),
        sha256=hashlib.sha256(data).hexdigest(),
        width=rgb.width,
        height=rgb.height,
        hashed_by_server=True,
    )


def pdq_from_pdqhash_vector(vector) -> int:
    """The 256-bit integer of a ``pdqhash.compute`` bit vector, in ThreatExchange's hex order.

    pdqhash lists bit 255 first (it reverses ThreatExchange's bit k = ``w[k >> 4] >> (k & 15)``),
    and ThreatExchange prints ``w[15]`` first, so reading the vector as a binary number gives the
    integer whose 64-digit hex is ThreatExchange's string.
    """
    return int("".join("1" if bit else "0" for bit in vector), 2)
