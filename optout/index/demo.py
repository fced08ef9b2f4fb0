"""The demo dataset: real photographs that scikit-image ships, plus edited copies.

The copies are the edits reposting sites make: smaller, recompressed, cropped off-centre, mirrored,
framed by a border, and captioned with a bar of text under the picture. A request for one photo
verifies every copy it names (``optout.imaging`` variants on both sides), and discovery finds every
copy by the photo's reference variants: those that lie inside it (small, recompressed, cropped,
mirrored) by its turns and crops, the framed and captioned ones by its pads.

The app serves these images itself (``/demo/images/<name>.jpg``), so the whole
flow (request, fetch, verification, review) works offline on 127.0.0.1. The
bytes are made deterministically on demand; nothing is downloaded.
"""

import io
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field", "retina", "brick")
DATASET_NAME = "demo"
VARIANTS = ("original", "small", "recompressed", "cropped", "mirrored", "framed", "captioned")
SAMPLE_DIR = Path(find_spec("skimage").submodule_search_locations[0]) / "data"


def names() -> list[str]:
    return [f"{photo}-{variant}" for photo in PHOTOS for variant in VARIANTS]


def source(photo: str) -> Image.Image:
    path = next(SAMPLE_DIR.glob(f"{photo}.*"))
    with Image.open(path) as image:
        return ImageOps.fit(image.convert("RGB"), (800, 600), Image.Resampling.LANCZOS)


@lru_cache(maxsize=64)
def image_bytes(name: str) -> bytes:
    """The JPEG bytes of a demo image. Raises KeyError for an unknown name."""
    photo, _, variant = name.partition("-")
    if photo not in PHOTOS or variant not in VARIANTS:
        raise KeyError(name)
    image, quality = source(photo), 90
    if variant == "small":
        image = image.resize((320, 240), Image.Resampling.LANCZOS)
    elif variant == "recompressed":
        quality = 35
    elif variant == "cropped":
        image = image.crop((40, 30, 760, 570))
    elif variant == "mirrored":
        image = ImageOps.mirror(image)
    elif variant == "framed":
        image = ImageOps.expand(image, border=(90, 70), fill=(38, 70, 120))
    elif variant == "captioned":
        captioned = Image.new("RGB", (image.width, image.height + 90), (255, 255, 255))
        captioned.paste(image, (0, 0))
        ImageDraw.Draw(captioned).text(
            (24, image.height + 30), f"Look who I met today! #{photo} #nofilter", fill=(20, 20, 20), font_size=28
        )
        image = captioned
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
