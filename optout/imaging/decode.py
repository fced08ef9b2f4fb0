"""Opening hostile image bytes: the format allow-list, the byte and pixel caps, EXIF orientation.

Decoding is hostile-input handling, in this order: an empty or oversized body is refused from its
length; Pillow opens the header with an allow-list of formats (JPEG, PNG, WebP, GIF; never EPS, so
never Ghostscript or any other subprocess); the header's pixel count is checked against our cap
*before* anything is decoded, and Pillow's own bomb warning is turned into the same refusal; truncated
or corrupt data is an error (``LOAD_TRUNCATED_IMAGES`` must stay off). GIFs and animated PNG/WebP use
their first frame. Colours: palette, CMYK and greyscale go through Pillow's RGB conversion; 16-bit
greyscale is scaled (Pillow would clip it); transparency is composited on white, as img2dataset does
when it builds LAION-style sets, so the colour hidden under transparent pixels never changes a hash.
"""

import io
import threading
import warnings

import numpy as np
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
    return image


def _too_many_pixels(max_pixels: int) -> ImageRejected:
    return ImageRejected("too_many_pixels", f"The image has more than {max_pixels:,} pixels.")


def load_pixels(image: ImageFile.ImageFile) -> None:
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


def flatten(image: Image.Image) -> Image.Image:
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


def luma_of(image: Image.Image) -> np.ndarray:
    """Float luma as PDQ defines it (the same weights as Pillow's "L")."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32)
    rgb = np.asarray(image, dtype=np.float32)
    return rgb[:, :, 0] * np.float32(0.299) + rgb[:, :, 1] * np.float32(0.587) + rgb[:, :, 2] * np.float32(0.114)
