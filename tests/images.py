"""Builders of real image bytes for tests: scikit-image's sample photographs, encoded in memory.

Every function returns ``bytes``. Photos come from ``skimage/data`` (read with Pillow, nothing
downloaded): ``astronaut``, ``coffee``, ``chelsea``, ``rocket``, ``hubble_deep_field``,
``retina``, ``motorcycle_left``, ``brick``, ``grass``, ``gravel``, ``ihc``, ``color``, ...
(see ``PHOTOS``). Sizes are ``(width, height)``; a photo is resized to it (aspect ignored)
with Lanczos.
"""

import io
import struct
import zlib
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from PIL import Image

SAMPLE_DIR = Path(find_spec("skimage").submodule_search_locations[0]) / "data"
PHOTOS = {path.stem: path for path in sorted(SAMPLE_DIR.iterdir()) if path.suffix in (".png", ".jpg")}


@lru_cache(maxsize=32)
def _photo(name: str) -> Image.Image:
    with Image.open(PHOTOS[name]) as image:
        return image.convert("RGB")


def photo(name: str = "astronaut", size: tuple[int, int] | None = None) -> Image.Image:
    """A sample photo as an RGB Pillow image (a fresh copy), optionally resized."""
    image = _photo(name)
    return image.resize(size, Image.Resampling.LANCZOS) if size else image.copy()


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def with_logo(image: Image.Image, corner: tuple[int, int], share: float = 0.10) -> Image.Image:
    """The picture with scikit-image's logo (an opaque square badge) over ``share`` of it, near a corner
    (bottom?, right?), as bench/match_quality.py's watermark class pastes it."""
    side = int((image.width * image.height * share) ** 0.5)
    left = image.width - side - image.width // 30 if corner[1] else image.width // 30
    top = image.height - side - image.height // 30 if corner[0] else image.height // 30
    out = image.copy()
    out.paste(photo("logo", (side, side)), (left, top))
    return out


def photo_jpeg(
    name: str = "astronaut", size: tuple[int, int] = (640, 480), quality: int = 90, exif_orientation: int | None = None
) -> bytes:
    """A JPEG of a photo. With ``exif_orientation`` the stored pixels are the upright photo turned so
    that a viewer applying the tag shows it upright again (e.g. 6: stored turned 90 degrees left)."""
    image = photo(name, size)
    if exif_orientation is None:
        return encode(image, "JPEG", quality=quality)
    stored = image.transpose(_STORE_FOR_ORIENTATION[exif_orientation]) if exif_orientation != 1 else image
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    return encode(stored, "JPEG", quality=quality, exif=exif.tobytes())


# The inverse of each EXIF orientation's correction: what a camera stores for an upright scene.
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def photo_png(name: str = "astronaut", size: tuple[int, int] = (640, 480), mode: str = "RGB") -> bytes:
    """A PNG of a photo in ``mode`` (RGB, RGBA with a transparent left quarter, L, P, I;16 ...)."""
    image = photo(name, size)
    if mode == "RGBA":
        image = image.convert("RGBA")
        alpha = Image.new("L", image.size, 255)
        alpha.paste(0, (0, 0, image.width // 4, image.height))
        image.putalpha(alpha)
    elif mode == "I;16":
        image = image.convert("L").point(lambda v: v * 257, "I").convert("I;16")
    elif mode == "P":
        image = image.quantize(256)
    elif mode != "RGB":
        image = image.convert(mode)
    return encode(image, "PNG")


def photo_webp(name: str = "astronaut", size: tuple[int, int] = (640, 480), quality: int = 90) -> bytes:
    return encode(photo(name, size), "WEBP", quality=quality)


def photo_gif(names: tuple[str, ...] = ("astronaut", "coffee"), size: tuple[int, int] = (320, 240)) -> bytes:
    """An animated GIF, one frame per named photo (the first frame is ``names[0]``)."""
    frames = [photo(name, size).quantize(256) for name in names]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def pixel_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG that declares ``width x height`` 1-bit pixels but is under a kilobyte.

    Its IDAT holds one compressed row only: decoding it would allocate gigabytes and then fail.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row, 9)) + chunk(b"IEND", b"")


def large_png(
    width: int, height: int, bit_depth: int, colour_type: int, *, plte: bytes = b"", trns: bytes = b""
) -> bytes:
    """A PNG of any PNG mode (``colour_type`` 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA), written row by
    row so that no row of pixels sits in memory whole: a soft stripe pattern, which compresses to little.
    The worst inputs for decoding memory (``bench/decode_memory.py``) are built with it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row_bytes = (width * channels * bit_depth + 7) // 8
    compressor = zlib.compressobj(9)
    parts = []
    for y in range(height):
        value = (y * 7) & 0xFF
        parts.append(compressor.compress(b"\0" + bytes([value, 0x40]) * (row_bytes // 2) + b"\x80" * (row_bytes % 2)))
    parts.append(compressor.flush())
    body = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    )
    if plte:
        body += chunk(b"PLTE", plte)
    if trns:
        body += chunk(b"tRNS", trns)
    return body + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def jpeg_with_early_end(name: str = "astronaut", size: tuple[int, int] = (640, 480), keep: float = 0.5) -> bytes:
    """The first ``keep`` share of a JPEG, closed by an end-of-image marker: libjpeg only warns, and Pillow
    decodes the missing part grey."""
    data = photo_jpeg(name, size)
    return data[: int(len(data) * keep)] + b"\xff\xd9"


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """The data of a 64 x 64 JPEG under a frame header that claims ``width x height``."""
    data = bytearray(photo_jpeg("coffee", (64, 64)))
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def truncated_jpeg(name: str = "astronaut", size: tuple[int, int] = (640, 480), keep: float = 0.6) -> bytes:
    """The first ``keep`` share of a JPEG's bytes: a download cut short."""
    data = photo_jpeg(name, size)
    return data[: int(len(data) * keep)]


def random_bytes(length: int = 4096, seed: int = 7) -> bytes:
    """Bytes that are no image at all (deterministic)."""
    import random

    return random.Random(seed).randbytes(length)


def eps_file() -> bytes:
    """An Encapsulated PostScript file: Pillow would run Ghostscript to render it."""
    return (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
    )


def pdf_file() -> bytes:
    return encode(photo("astronaut", (64, 48)), "PDF")


def svg_file() -> bytes:
    return b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'


def tiff_file() -> bytes:
    return encode(photo("astronaut", (64, 48)), "TIFF")


def bmp_file() -> bytes:
    return encode(photo("astronaut", (64, 48)), "BMP")
