"""The reviewer's preview decodes like the signals pipeline: every mode, bounded, no truncated JPEG."""

import io

import pytest
from PIL import Image

from optout.imaging import ImageRejected
from requests_app.preview import thumbnail_jpeg
from tests import images

CAPS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 50_000_000}
PALETTE = bytes(range(256)) * 3


@pytest.mark.parametrize(
    "data",
    [
        images.large_png(2048, 1536, 16, 0),  # once a 500: Pillow cannot reduce 16-bit images
        images.large_png(2048, 1536, 16, 6),
        images.large_png(2048, 1536, 8, 4),
        images.large_png(1024, 768, 8, 3, plte=PALETTE, trns=b"\x80" * 256),
        images.photo_png("coffee", (1200, 900), mode="RGBA"),
        images.photo_webp("coffee", (1200, 900)),
        images.photo_gif(),
        images.encode(images.photo("coffee", (1200, 900)).convert("CMYK"), "JPEG"),
    ],
    ids=["png-16-bit-grey", "png-16-bit-rgba", "png-la", "png-palette-alpha", "png-rgba", "webp", "gif", "jpeg-cmyk"],
)
def test_the_preview_handles_every_mode(data):
    preview = Image.open(io.BytesIO(thumbnail_jpeg(data, **CAPS)))
    assert preview.format == "JPEG" and preview.mode == "RGB"
    assert max(preview.size) <= 512


def test_the_preview_of_an_exif_turned_photo_is_upright():
    preview = Image.open(
        io.BytesIO(thumbnail_jpeg(images.photo_jpeg("coffee", (600, 400), exif_orientation=6), **CAPS))
    )
    assert preview.size[0] > preview.size[1]


def test_the_preview_refuses_a_jpeg_whose_data_stops_early():
    with pytest.raises(ImageRejected) as info:
        thumbnail_jpeg(images.jpeg_with_early_end(), **CAPS)
    assert info.value.code == "corrupt"
