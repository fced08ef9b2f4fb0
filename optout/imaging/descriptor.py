"""The descriptor of our hashes: which algorithms, libraries and parameters produced them.

Every stored hash carries ``descriptor_key()`` so that hashes stay comparable after upgrades: bump
``PIPELINE_VERSION`` whenever a change in this package changes a hash.
"""

from importlib.metadata import version

from optout.imaging.decode import ALLOWED_FORMATS

PDQ_QUALITY_FLOOR = 50  # below this PDQ is noise (Meta's recommendation): the hash is discarded
REDUCE_MIN_SIDE = 384  # the decoder may shrink an image, but not its shorter side below this
PIPELINE_VERSION = 2  # bump when a change here changes hashes
PHASH_SIZE = 8
PHASH_HIGHFREQ = 4

DESCRIPTOR_KEY = (
    f"optout-signals/{PIPELINE_VERSION};"
    f"phash=imagehash-{version('ImageHash')}/{PHASH_SIZE}x{PHASH_HIGHFREQ};"
    f"pdq=threatexchange-pdq256/q{PDQ_QUALITY_FLOOR};"
    f"reduce=min{REDUCE_MIN_SIDE}"
)


def descriptor_key() -> str:
    """A stable name for the algorithms and parameters, for ``HashDescriptor.key`` (<= 200 chars)."""
    return DESCRIPTOR_KEY


DESCRIPTOR = {
    "key": descriptor_key(),
    "phash": {
        "library": "ImageHash",
        "version": version("ImageHash"),
        "function": "imagehash.phash",
        "hash_size": PHASH_SIZE,
        "highfreq_factor": PHASH_HIGHFREQ,
        "dct": f"{PHASH_SIZE * PHASH_HIGHFREQ}x{PHASH_SIZE * PHASH_HIGHFREQ} greyscale, Lanczos resize",
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
