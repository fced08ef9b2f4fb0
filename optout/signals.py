"""Image signals: bytes in, ``ImageSignals`` out. Pure: no Django.

Every image (an upload, a fetched URL, a dataset row) becomes the same three
signals: a 64-bit pHash (``imagehash``), a 256-bit PDQ hash with its quality,
and the sha256 of the exact bytes.

Decoding is hostile-input handling, in this order: an empty or oversized body
is refused from its length; Pillow opens the header with an allow-list of
formats (JPEG, PNG, WebP, GIF; never EPS, so never Ghostscript or any other
subprocess); the header's pixel count is checked against our cap *before*
anything is decoded, and Pillow's own bomb warning is turned into the same
refusal; truncated or corrupt data is an error (``LOAD_TRUNCATED_IMAGES`` must
stay off). GIFs and animated PNG/WebP use their first frame. EXIF orientation
is applied. Colours: palette, CMYK and greyscale go through Pillow's RGB
conversion; 16-bit greyscale is scaled (Pillow would clip it); transparency is
composited on white, as img2dataset does when it builds LAION-style sets, so
the colour hidden under transparent pixels never changes a hash.

Speed. The naive pipeline (``compute_signals_naive``: full decode, then
``imagehash.phash`` and ``pdqhash.compute``) spends most of its time in PDQ's
box filters over the full-resolution image. Both hashes start by shrinking the
image with a fixed linear filter (pHash: Pillow's Lanczos to 32x32; PDQ: two
Jarosz box passes, then 64x64 samples), so ``compute_signals`` decodes a reduced
image (JPEG: libjpeg's DCT scaling via ``draft()``; other formats: a box
``reduce()``), keeping the shorter side at least ``REDUCE_MIN_SIDE`` pixels, and
applies each library's filter geometry, integrated over the reduced pixels, as
two small matrix products on one float luma image. pHash's DCT and median then
run in ``imagehash`` on the 32x32 result; PDQ's DCT, median and quality metric
(a few lines, as in Meta's reference code) run here. Without reduction the PDQ
bits equal ``pdqhash``'s exactly (the tests check it); ``bench/signals.py``
prints speed and agreement with the naive pipeline.
"""

import hashlib
import io
import math
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

import imagehash
import numpy as np
from PIL import Image, ImageFile

from optout.hashbits import BadHash, hamming, pdq_from_hex, pdq_to_hex, phash_from_hex, phash_to_hex, sha256_from_hex

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
PDQ_QUALITY_FLOOR = 50  # below this PDQ is noise (Meta's recommendation): the hash is discarded
REDUCE_MIN_SIDE = 384  # the decoder may shrink an image, but not its shorter side below this
PIPELINE_VERSION = 2  # bump when a change here changes hashes

_PHASH_SIZE = 8
_PHASH_HIGHFREQ = 4
_MAX64 = (1 << 64) - 1
_MAX256 = (1 << 256) - 1
_WHITE = (255, 255, 255)
# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The picture is reduced as stored, then turned upright. Per upright axis (x, y): whether the turn
# reversed it, which moves the stored picture's short last reduction block to the front.
_SHORT_BLOCK_FIRST = {
    1: (False, False),
    2: (True, False),
    3: (True, True),
    4: (False, True),
    5: (False, False),
    6: (True, False),
    7: (True, True),
    8: (False, True),
}
# warnings.catch_warnings swaps process-wide state; serialise our use of it.
_OPEN_LOCK = threading.Lock()


_DESCRIPTOR_KEY = (
    f"optout-signals/{PIPELINE_VERSION};"
    f"phash=imagehash-{version('ImageHash')}/{_PHASH_SIZE}x{_PHASH_HIGHFREQ};"
    f"pdq=threatexchange-pdq256/q{PDQ_QUALITY_FLOOR};"
    f"reduce=min{REDUCE_MIN_SIDE}"
)


def descriptor_key() -> str:
    """A stable name for the algorithms and parameters, for ``HashDescriptor.key`` (<= 200 chars)."""
    return _DESCRIPTOR_KEY


DESCRIPTOR = {
    "key": descriptor_key(),
    "phash": {
        "library": "ImageHash",
        "version": version("ImageHash"),
        "function": "imagehash.phash",
        "hash_size": _PHASH_SIZE,
        "highfreq_factor": _PHASH_HIGHFREQ,
        "dct": f"{_PHASH_SIZE * _PHASH_HIGHFREQ}x{_PHASH_SIZE * _PHASH_HIGHFREQ} greyscale, Lanczos resize",
        "bits": 64,
        "hex": "str(imagehash.phash(img)): row-major, first bit most significant",
    },
    "pdq": {
        "algorithm": "PDQ (Meta ThreatExchange): Jarosz box filter to 64x64, 16x16 DCT, median threshold",
        "reference_library": "pdqhash",
        "reference_version": version("pdqhash"),
        "bits": 256,
        "quality_floor": PDQ_QUALITY_FLOOR,
        "hex": "ThreatExchange Hash256.format: words w[15]..w[0]; bit i*16+j is DCT coefficient [i][j] > median",
    },
    "decode": {
        "library": "Pillow",
        "version": version("Pillow"),
        "formats": list(ALLOWED_FORMATS),
        "frame": "first",
        "orientation": "EXIF applied",
        "alpha": "composited on white",
        "luma": "0.299 R + 0.587 G + 0.114 B",
        "reduction": f"JPEG DCT scaling or box reduce, shorter side kept >= {REDUCE_MIN_SIDE} px; "
        "each hash's own resampling applied over the reduced pixels",
    },
}


class ImageRejected(Exception):
    """An image we will not hash. ``code`` is for programs, ``message`` is safe to show to anyone."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImageSignals:
    """The signals of one image. ``width``/``height`` (after EXIF orientation) are None for client-sent signals."""

    phash: int
    pdq: int | None
    pdq_quality: int
    sha256: str | None  # None for a dataset row whose image bytes were never seen
    width: int | None = None
    height: int | None = None
    descriptor: str = _DESCRIPTOR_KEY

    def __post_init__(self):
        if not (isinstance(self.phash, int) and 0 <= self.phash <= _MAX64):
            raise BadHash("phash: not an unsigned 64-bit value")
        if self.pdq is not None and not (isinstance(self.pdq, int) and 0 <= self.pdq <= _MAX256):
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


# --- Decoding ----------------------------------------------------------------------------


def _open(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageFile.ImageFile:
    """Open the header only, and refuse what we will not decode. Nothing is decoded yet."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process turned it on; truncated files would then hash as half-grey pictures.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected("too_large", f"The file is larger than {max_bytes // (1024 * 1024) or 1} MB.")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.UnidentifiedImageError:
        raise ImageRejected("unsupported_format", "The file is not a JPEG, PNG, WebP or GIF image.") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _too_many_pixels(max_pixels) from None
    except Exception:
        # A plugin that recognised its magic bytes and then choked on the header.
        raise ImageRejected("corrupt", "The image file is damaged and cannot be read.") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("corrupt", "The image file is damaged and cannot be read.")
    if width * height > max_pixels:
        raise _too_many_pixels(max_pixels)
    return image


def _too_many_pixels(max_pixels: int) -> ImageRejected:
    return ImageRejected("too_many_pixels", f"The image has more than {max_pixels:,} pixels.")


def _load(image: ImageFile.ImageFile) -> None:
    try:
        image.load()
    except Exception:
        # Decoders fail on hostile data in many ways (OSError for truncation, SyntaxError,
        # ValueError, zlib.error, ...); every one of them means the same to the user.
        raise ImageRejected("corrupt", "The image file is damaged or incomplete and cannot be read.") from None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:
        return 1  # unreadable EXIF: hash the pixels as stored rather than refuse the picture
    return value if value in _ORIENTATION else 1


def _rgb_or_l(image: Image.Image) -> Image.Image:
    """An "RGB" or "L" image with transparency flattened on white and 16-bit samples scaled to 8 bits."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode != "F":
            values = values / 257.0  # 16-bit range to 8-bit; Pillow's convert("L") would clip instead
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if "A" in mode or mode.endswith("a") or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if mode in ("RGB", "L"):
        return image
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _luma(image: Image.Image) -> np.ndarray:
    """Float luma as PDQ defines it (the same weights as Pillow's "L")."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32)
    rgb = np.asarray(image, dtype=np.float32)
    return rgb[:, :, 0] * np.float32(0.299) + rgb[:, :, 1] * np.float32(0.587) + rgb[:, :, 2] * np.float32(0.114)


# --- Signals -----------------------------------------------------------------------------


def compute_signals(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageSignals:
    """The signals of an image. Raises ``ImageRejected`` for anything we will not decode."""
    image = _open(data, max_bytes=max_bytes, max_pixels=max_pixels)
    width, height = image.size
    scale = 1
    if image.format in ("JPEG", "MPO"):
        drafted = image.draft("RGB", (REDUCE_MIN_SIDE, REDUCE_MIN_SIDE))
        if drafted:
            scale = round(width / drafted[1][2])
    _load(image)
    orientation = _orientation(image)
    flat = _rgb_or_l(image)
    if scale == 1:
        scale = max(1, min(width, height) // REDUCE_MIN_SIDE)
        if scale > 1:
            flat = flat.reduce(scale)
    if orientation != 1:
        flat = flat.transpose(_ORIENTATION[orientation])
        if orientation in (5, 6, 7, 8):
            width, height = height, width
    luma = _luma(flat)

    rows, cols = luma.shape
    short_x, short_y = _SHORT_BLOCK_FIRST[orientation]
    small = _resample(luma, _lanczos_kernel(height, scale, rows, short_y), _lanczos_kernel(width, scale, cols, short_x))
    phash_image = Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8), "L")
    phash = int(str(imagehash.phash(phash_image, hash_size=_PHASH_SIZE, highfreq_factor=_PHASH_HIGHFREQ)), 16)
    buffer64 = _resample(
        luma, _jarosz_kernel(height, scale, rows, short_y), _jarosz_kernel(width, scale, cols, short_x)
    )
    pdq, quality = _pdq_from_buffer(buffer64)
    return ImageSignals(
        phash=phash,
        pdq=pdq if quality >= PDQ_QUALITY_FLOOR else None,
        pdq_quality=quality,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
    )


def compute_signals_naive(data: bytes, *, max_bytes: int = 1 << 30, max_pixels: int = 1 << 28) -> ImageSignals:
    """The reference pipeline: full decode, then ``imagehash.phash`` and ``pdqhash.compute`` (tests, bench)."""
    import pdqhash

    image = _open(data, max_bytes=max_bytes, max_pixels=max_pixels)
    _load(image)
    orientation = _orientation(image)
    rgb = _rgb_or_l(image).convert("RGB")
    if orientation != 1:
        rgb = rgb.transpose(_ORIENTATION[orientation])
    phash = int(str(imagehash.phash(rgb, hash_size=_PHASH_SIZE, highfreq_factor=_PHASH_HIGHFREQ)), 16)
    vector, quality = pdqhash.compute(np.asarray(rgb))
    return ImageSignals(
        phash=phash,
        pdq=pdq_from_pdqhash_vector(vector) if quality >= PDQ_QUALITY_FLOOR else None,
        pdq_quality=int(quality),
        sha256=hashlib.sha256(data).hexdigest(),
        width=rgb.width,
        height=rgb.height,
    )


def pdq_from_pdqhash_vector(vector) -> int:
    """The 256-bit integer of a ``pdqhash.compute`` bit vector, in ThreatExchange's hex order.

    pdqhash lists bit 255 first (it reverses ThreatExchange's bit k = ``w[k >> 4] >> (k & 15)``),
    and ThreatExchange prints ``w[15]`` first, so reading the vector as a binary number gives the
    integer whose 64-digit hex is ThreatExchange's string.
    """
    return int("".join("1" if bit else "0" for bit in vector), 2)


# --- Resampling geometry -------------------------------------------------------------------
#
# Each kernel maps one axis of the reduced image (n_reduced pixels, each the average of `scale`
# full-resolution pixels) to the hash's grid, as the library's filter would on the full image.


def _fold(kernel: np.ndarray, scale: int, n_reduced: int, short_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integrate a full-resolution kernel over reduced pixels of ``scale`` source pixels each.

    Returned banded, as (indexes, weights), each (outputs, band): every output reads a short run of
    inputs. Banded products also keep clear of BLAS, whose threads only slow such small products
    down on a busy machine.
    """
    # Decoders round the reduced size up (ceil(n / scale)): the last reduced pixel of the stored
    # picture averages what is left. An EXIF turn that reverses this axis puts that short pixel first.
    pad = n_reduced * scale - kernel.shape[1]
    kernel = np.pad(kernel, ((0, 0), (pad, 0) if short_first else (0, pad)))
    kernel = kernel.reshape(kernel.shape[0], n_reduced, scale).sum(axis=2)
    nonzero = np.abs(kernel) > 1e-9
    first = nonzero.argmax(axis=1)
    length = n_reduced - nonzero[:, ::-1].argmax(axis=1) - first
    offsets = np.arange(length.max())[None, :]
    indexes = np.minimum(first[:, None] + offsets, n_reduced - 1)
    weights = np.where(offsets < length[:, None], np.take_along_axis(kernel, indexes, axis=1), 0.0)
    return indexes, weights.astype(np.float32)


def _resample(luma: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``rows_kernel @ luma @ cols_kernel.T`` with banded kernels."""
    indexes, weights = rows
    partial = np.einsum("ob,obk->ok", weights, luma[indexes])
    indexes, weights = cols
    return np.einsum("ob,obk->ok", weights, partial.T[indexes]).T


@lru_cache(maxsize=256)
def _lanczos_kernel(n: int, scale: int, n_reduced: int, short_first: bool, out: int = _PHASH_SIZE * _PHASH_HIGHFREQ):
    """Pillow's ``resize(..., LANCZOS)`` coefficients for n -> out (Resample.c precompute_coeffs)."""
    step = n / out
    filter_scale = max(step, 1.0)
    support = 3.0 * filter_scale
    kernel = np.zeros((out, n))
    for i in range(out):
        center = (i + 0.5) * step
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n)
        x = (np.arange(lo, hi) - center + 0.5) / filter_scale
        weights = np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
        kernel[i, lo:hi] = weights / weights.sum()
    return _fold(kernel, scale, n_reduced, short_first)


@lru_cache(maxsize=256)
def _jarosz_kernel(n: int, scale: int, n_reduced: int, short_first: bool):
    """PDQ's two box-filter passes along one axis, sampled at the 64 decimation points.

    As ThreatExchange's box1DFloat: a window of w = ceil(n / 128) pixels, output i averaging
    input [i - (w - half), i + half - 1] clipped to the edges, half = (w + 2) // 2; then
    decimateFloat samples index int((k + 0.5) * n / 64).
    """
    window = (n + 127) // 128
    half = (window + 2) // 2

    def box_bounds(i):
        return np.maximum(i - (window - half), 0), np.minimum(i + half - 1, n - 1)

    samples = ((np.arange(64) + 0.5) * n / 64).astype(np.int64)
    kernel = np.zeros((64, n + 1))
    first_lo, first_hi = box_bounds(samples)
    for row, (lo, hi) in enumerate(zip(first_lo, first_hi, strict=True)):
        inner = np.arange(lo, hi + 1)  # the first pass reads these outputs of the second
        inner_lo, inner_hi = box_bounds(inner)
        weight = 1.0 / (hi - lo + 1) / (inner_hi - inner_lo + 1)
        np.add.at(kernel[row], inner_lo, weight)
        np.add.at(kernel[row], inner_hi + 1, -weight)
    return _fold(np.cumsum(kernel, axis=1)[:, :n], scale, n_reduced, short_first)


@lru_cache(maxsize=1)
def _pdq_dct() -> np.ndarray:
    i = np.arange(1, 17)[:, None]
    j = np.arange(64)[None, :]
    return (math.sqrt(2.0 / 64.0) * np.cos(math.pi / 128.0 * i * (2 * j + 1))).astype(np.float32)


def _pdq_from_buffer(buffer64: np.ndarray) -> tuple[int, int]:
    """PDQ's last steps on the 64x64 downsample: quality metric, 16x16 DCT, bits above the median."""
    # The reference casts each scaled step to int (truncation) before summing.
    steps = np.concatenate([(buffer64[:-1, :] - buffer64[1:, :]).ravel(), (buffer64[:, :-1] - buffer64[:, 1:]).ravel()])
    quality = min(100, int(np.abs(np.trunc(steps * 100.0 / 255.0)).sum()) // 90)
    dct = _pdq_dct()
    coefficients = (dct @ buffer64 @ dct.T).ravel()
    median = np.partition(coefficients, 127)[127]  # Torben's median of 256 values: the 128th smallest
    value = 0
    for k in np.flatnonzero(coefficients > median):
        value |= 1 << int(k)
    return value, quality


# --- Comparison --------------------------------------------------------------------------


def phash_distance(a: int, b: int) -> int:
    if not (0 <= a <= _MAX64 and 0 <= b <= _MAX64):
        raise ValueError("a pHash is an unsigned 64-bit value")
    return hamming(a, b)


def pdq_distance(a: int, b: int) -> int:
    if not (0 <= a <= _MAX256 and 0 <= b <= _MAX256):
        raise ValueError("a PDQ hash is an unsigned 256-bit value")
    return hamming(a, b)


@dataclass(frozen=True)
class Comparison:
    """How a candidate compares with a reference, family by family.

    A distance is None when either side lacks that family (no PDQ below the quality floor).
    ``strength`` is "strong" when both perceptual families match or the bytes are identical,
    "weak" when exactly one family matches, None otherwise.
    """

    phash_distance: int | None
    phash_match: bool
    pdq_distance: int | None
    pdq_match: bool
    sha256_equal: bool
    strength: str | None

    def _rank(self) -> tuple:
        rank = {"strong": 2, "weak": 1, None: 0}[self.strength]
        pdq = self.pdq_distance / 256 if self.pdq_distance is not None else 1.0
        phash = self.phash_distance / 64 if self.phash_distance is not None else 1.0
        return (-rank, min(pdq, phash), pdq + phash)


def compare(
    reference: ImageSignals, candidate: ImageSignals, *, phash_threshold: int, pdq_threshold: int
) -> Comparison:
    phash_d = phash_distance(reference.phash, candidate.phash)
    if reference.pdq is None or candidate.pdq is None:
        pdq_d = None
    else:
        pdq_d = pdq_distance(reference.pdq, candidate.pdq)
    phash_match = phash_d <= phash_threshold
    pdq_match = pdq_d is not None and pdq_d <= pdq_threshold
    sha256_equal = reference.sha256 is not None and reference.sha256 == candidate.sha256
    if sha256_equal or (phash_match and pdq_match):
        strength = "strong"
    elif phash_match or pdq_match:
        strength = "weak"
    else:
        strength = None
    return Comparison(phash_d, phash_match, pdq_d, pdq_match, sha256_equal, strength)


def best_comparison(
    references: list[ImageSignals], candidate: ImageSignals, *, phash_threshold: int, pdq_threshold: int
) -> Comparison:
    """The best comparison of a candidate against one reference image's signals (the image, crops, mirrors...).

    Best means strongest, then closest (distances as a share of each hash's bits).
    """
    if not references:
        raise ValueError("a reference has at least one set of signals")
    comparisons = [
        compare(reference, candidate, phash_threshold=phash_threshold, pdq_threshold=pdq_threshold)
        for reference in references
    ]
    return min(comparisons, key=Comparison._rank)
