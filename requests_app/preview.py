"""The reviewer's preview of the picture at an item's URL: fetched by our server, shrunk, re-encoded.

The reviewer's browser never contacts the host of the URL (that would hand the
reviewer's address to whoever posted the picture, and run whatever the host
serves): the fetch goes through the SSRF-safe fetcher, the bytes are checked by
the same decoder as every other image (format allow-list, byte and pixel caps,
no truncated files), and what reaches the browser is a fresh JPEG of at most
``PREVIEW_SIDE`` pixels with no metadata. Nothing is stored.
"""

import io

from django.conf import settings

from optout.fetch import FetchError, fetch_image
from optout.imaging import ImageRejected
from optout.imaging.decode import ORIENTATION, bounded_decode, exif_orientation, flatten, load_pixels, open_image
from optout.imaging.descriptor import REDUCE_MIN_SIDE

PREVIEW_SIDE = 512


class PreviewUnavailable(Exception):
    """No preview for this URL now. The message is safe to show a reviewer."""


@bounded_decode
def thumbnail_jpeg(data: bytes, *, max_bytes: int, max_pixels: int, side: int = PREVIEW_SIDE) -> bytes:
    """A JPEG of at most ``side`` x ``side`` pixels of ``data``, upright, on white, without metadata.

    Raises ``ImageRejected`` for anything ``optout.imaging`` would not decode. The decoding is the
    signals pipeline's own (format allow-list, caps checked before decoding, damaged files refused, the
    memory budget, conversion of every mode strip by strip while reducing), so a 16-bit or transparent
    picture previews as it hashes.
    """
    image = open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    image.draft("RGB", (side, side))  # JPEG: let libjpeg decode at a reduced scale
    # The same reduction as the signals' (short side kept >= REDUCE_MIN_SIDE): whatever hashed within the
    # memory budget previews within it too.
    reduce_by = max(1, min(image.size) // REDUCE_MIN_SIDE)
    load_pixels(image, reduce_by=reduce_by)
    orientation = exif_orientation(image)
    image = flatten(image, reduce_by=reduce_by)
    if orientation != 1:
        image = image.transpose(ORIENTATION[orientation])
    image.thumbnail((side, side))
    if image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)  # no exif/icc passed on: metadata is dropped
    return out.getvalue()


def preview_of_url(url: str) -> bytes:
    """Fetch ``url`` under the fetcher's rules and return its preview JPEG; raises ``PreviewUnavailable``."""
    try:
        fetched = fetch_image(
            url,
            allow_loopback=settings.OPTOUT_FETCH_ALLOW_LOOPBACK,
            timeout=settings.OPTOUT_FETCH_TIMEOUT,
            max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES,
        )
        return thumbnail_jpeg(
            fetched.data, max_bytes=settings.OPTOUT_MAX_IMAGE_BYTES, max_pixels=settings.OPTOUT_MAX_IMAGE_PIXELS
        )
    except FetchError as exc:
        raise PreviewUnavailable(exc.message) from None
    except ImageRejected as exc:
        raise PreviewUnavailable(exc.message) from None
