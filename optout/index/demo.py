"""The demo dataset: real photographs that scikit-image ships, plus transformed copies.

The app serves these images itself (``/demo/images/<name>.jpg``), so the whole
flow (request, fetch, verification, review) works offline on 127.0.0.1. The
bytes are made deterministically on demand; nothing is downloaded.
"""

import io
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from PIL import Image, ImageOps

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field", "retina", "brick")
DATASET_NAME = "demo"
VARIANTS = ("original", "small", "recompressed", "cropped", "mirrored")
SAMPLE_DIR = Path(find_spec("skimage").submodule_search_locations[0]) / "data"


def names() -> list[str]:
    return [f"{photo}-{variant}" for photo in PHOTOS for variant in VARIANTS]


def _source(photo: str) -> Image.Image:
    path = next(SAMPLE_DIR.glob(f"{photo}.*"))
    with Image.open(path) as image:
        return ImageOps.fit(image.convert("RGB"), (800, 600), Image.Resampling.LANCZOS)


@lru_cache(maxsize=64)
def image_bytes(name: str) -> bytes:
    """The JPEG bytes of a demo image. Raises KeyError for an unknown name."""
    photo, _, variant = name.partition("-")
    if photo not in PHOTOS or variant not in VARIANTS:
        raise KeyError(name)
    image, quality = _source(photo), 90
    if variant == "small":
        image = image.resize((320, 240), Image.Resampling.LANCZOS)
    elif variant == "recompressed":
        quality = 35
    elif variant == "cropped":
        image = image.crop((40, 30, 760, 570))
    elif variant == "mirrored":
        image = ImageOps.mirror(image)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
