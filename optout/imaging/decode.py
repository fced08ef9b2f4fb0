"""Opening hostile image bytes: the format allow-list, the byte and pixel caps, EXIF orientation.

Decoding is hostile-input handling, in this order: an empty or oversized body is refused from its
length; Pillow opens the header with an allow-list of formats (JPEG, PNG, WebP, GIF; never EPS, so
never Ghostscript or any other subprocess); the header's pixel count is checked against our cap
*before* anything is decoded, and Pillow's own bomb warning is turned into the same refusal; truncated
or corrupt data is an error (``LOAD_TRUNCATED_IMAGES`` must stay off). GIFs and animated PNG/WebP use
their first frame. Colours: palette, CMYK and greyscale go through Pillow's RGB conversion; 16-bit
greyscale is scaled (Pillow would clip it); transparency is composited on white, as img2dataset does
when it builds LAION-style sets, so the colour hidden under transparent pixels never changes a hash.

Memory is bounded per decode, not only per pixel: a 95 KB 16-bit PNG under the pixel cap once took
1.3 GB. ``load_pixels`` refuses an image whose decoded pixels (Pillow's bytes per pixel of its mode,
after JPEG's reduced decoding) plus the working copies of its reduced image would pass
``MAX_DECODE_BYTES``; ``flatten`` converts and reduces strip by strip, so no full-size wide copy (float,
RGBA) is ever made; and at most ``MAX_CONCURRENT_DECODES`` decodes run at once in a process
(``bounded_decode``). ``bench/decode_memory.py`` prints the peak of the worst inputs.

A JPEG whose scan data stops early decodes "successfully" in Pillow, the missing part grey; libjpeg
only warns. ``open_image`` runs libjpeg-turbo once more, at 1/8 scale and strict, through simplejpeg, and
refuses the file when it reports the data's premature end.
"""

import functools
import io
import threading
import warnings

import numpy as np
import simplejpeg
from PIL import Image, ImageFile

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

_WHITE = (255, 255, 255)
# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# warnings.catch_warnings swaps process-wide state; serialise our use of it.
_OPEN_LOCK = threading.Lock()

# What one decode may hold: the decoded pixels plus the working copies of the reduced image. With the
# interpreter and its libraries (about 50 MB) a decode stays under 256 MB.
MAX_DECODE_BYTES = 176 * 1024 * 1024
# Bytes per pixel Pillow keeps for each mode the allowed formats open as; every other mode (RGB, RGBA,
# LA, PA, CMYK, I, F) takes one 32-bit word.
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Decoders that hold more than the image while they work: Pillow decodes WebP through libwebp's
# animation decoder, two RGBA canvases, and then copies the frame (measured: about 15 bytes a pixel).
_DECODER_BYTES = {"WEBP": 16}
# Per pixel of the reduced image: its flat copy, float luma and the hashes' banded resampling.
WORK_BYTES_PER_PIXEL = 48
# Conversions run over strips of about this many pixels.
_STRIP_PIXELS = 1 << 20
# Five pictures a request, a few requests at once: decodes beyond these wait for a slot.
MAX_CONCURRENT_DECODES = 2
_DECODE_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
# libjpeg's warnings that the scan data ended before the image did.
_JPEG_PREMATURE_END = ("premature end",)


class ImageRejected(Exception):
    """An image we will not hash. ``code`` is for programs, ``message`` is safe to show to anyone."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def open_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageFile.ImageFile:
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
    if image.format in ("JPEG", "MPO"):
        _refuse_premature_end(data)
    return image


def _refuse_premature_end(data: bytes) -> None:
    """Refuse a JPEG whose scan data ends early (cut, or an early marker); other warnings are left to Pillow."""
    try:
        header = simplejpeg.decode_jpeg_header(data)
        colorspace = "CMYK" if header[2] in ("CMYK", "YCCK") else "GRAY"
        # min_height and min_width let libjpeg scale by 1/8; without them it decodes at full size.
        simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=True, min_height=1, min_width=1, min_factor=8)
    except ValueError as exc:
        if any(words in str(exc).lower() for words in _JPEG_PREMATURE_END):
            raise ImageRejected("corrupt", "The image file is incomplete: its data stops early.") from None


def bounded_decode(function):
    """Run ``function`` (a decode) only when one of the process's decode slots is free."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with _DECODE_SLOTS:
            return function(*args, **kwargs)

    return wrapper


def _too_many_pixels(max_pixels: int) -> ImageRejected:
    return ImageRejected("too_many_pixels", f"The image has more than {max_pixels:,} pixels.")


def decode_cost(size: tuple[int, int], mode: str, format: str | None, reduce_by: int) -> int:
    """The bytes one decode holds at most: the decoder's pixels plus the work on the reduced image."""
    width, height = size
    reduced = -(-width // reduce_by) * -(-height // reduce_by)
    per_pixel = max(_STORAGE_BYTES.get(mode, 4), _DECODER_BYTES.get(format, 0))
    return width * height * per_pixel + reduced * WORK_BYTES_PER_PIXEL


def load_pixels(image: ImageFile.ImageFile, *, reduce_by: int = 1, budget: int | None = MAX_DECODE_BYTES) -> None:
    """Decode the pixels, unless they and the work on them reduced by ``reduce_by`` would pass ``budget``.

    Call it after any ``draft``: the size is then the reduced decode's.
    """
    width, height = image.size
    if budget is not None and decode_cost(image.size, image.mode, image.format, reduce_by) > budget:
        raise ImageRejected(
            "too_many_pixels",
            f"The image is too large to process ({width} x {height} pixels of this kind). Send a smaller copy.",
        )
    try:
        image.load()
    except Exception:
        # Decoders fail on hostile data in many ways (OSError for truncation, SyntaxError,
        # ValueError, zlib.error, ...); every one of them means the same to the user.
        raise ImageRejected("corrupt", "The image file is damaged or incomplete and cannot be read.") from None


def exif_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:
        return 1  # unreadable EXIF: hash the pixels as stored rather than refuse the picture
    return value if value in ORIENTATION else 1


def flatten(image: Image.Image, *, reduce_by: int = 1) -> Image.Image:
    """An "RGB" or "L" image with transparency flattened on white and 16-bit samples scaled to 8 bits,
    box-reduced by ``reduce_by`` (Pillow's ``reduce``).

    Strip by strip: each strip's height is a multiple of ``reduce_by``, so every reduction block lies in
    one strip and the result is the same, pixel for pixel, as converting the whole image and reducing it.
    """
    if not _needs_conversion(image):
        return image.reduce(reduce_by) if reduce_by > 1 else image
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // width)
    rows = -(-rows // reduce_by) * reduce_by
    out = None
    for top in range(0, height, rows):
        strip = _flatten_whole(image.crop((0, top, width, min(height, top + rows))))
        if reduce_by > 1:
            strip = strip.reduce(reduce_by)
        if out is None:
            out = Image.new(strip.mode, (-(-width // reduce_by), -(-height // reduce_by)))
        out.paste(strip, (0, top // reduce_by))
    return out


def _needs_conversion(image: Image.Image) -> bool:
    return image.mode not in ("RGB", "L") or "transparency" in image.info


def _flatten_whole(image: Image.Image) -> Image.Image:
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
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def luma_of(image: Image.Image) -> np.ndarray:
    """Float luma as PDQ defines it (the same weights as Pillow's "L")."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32)
    rgb = np.asarray(image, dtype=np.float32)
    return rgb[:, :, 0] * np.float32(0.299) + rgb[:, :, 1] * np.float32(0.587) + rgb[:, :, 2] * np.float32(0.114)
