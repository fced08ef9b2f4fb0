"""Bench: image signals, fast pipeline against the naive one.

    .venv/bin/python bench/signals.py [--sizes 1024x768,3000x2000] [--repeat 2]

The corpus is scikit-image's sample photographs (no download), each also mirrored and
centre-cropped, resized to each size and saved as JPEG quality 90 in memory. For each size
it prints images per second of the naive pipeline (full decode, ``imagehash.phash``,
``pdqhash.compute``) and of ``compute_signals``, their ratio, and how far apart their hashes
are (Hamming distance: max, 95th percentile, share within 2 bits for pHash and within 10
bits for PDQ). Single process, single thread.
"""

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optout.imaging import compute_signals, compute_signals_naive, descriptor_key  # noqa: E402
from tests.images import PHOTOS, photo  # noqa: E402

NAMES = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "brick",
    "grass",
    "gravel",
    "ihc",
    "color",
    "camera",
    "coins",
    "moon",
]


def corpus(size: tuple[int, int]) -> list[bytes]:
    out = []
    for name in NAMES:
        if name not in PHOTOS:
            continue
        image = photo(name)
        w, h = image.size
        variants = (image, ImageOps.mirror(image), image.crop((w // 8, h // 8, w - w // 8, h - h // 8)))
        for variant in variants:
            buffer = io.BytesIO()
            variant.resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
            out.append(buffer.getvalue())
    return out


def rate(function, data: list[bytes], repeat: int) -> tuple[float, list]:
    results = [function(item) for item in data]  # warm caches (kernels, imports)
    start = time.perf_counter()
    for _ in range(repeat):
        for item in data:
            function(item)
    return repeat * len(data) / (time.perf_counter() - start), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024x768,3000x2000")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    def fast(data):
        return compute_signals(data, max_bytes=1 << 30, max_pixels=1 << 28)

    print(f"descriptor: {descriptor_key()}")
    header = (
        f"{'size':>10} {'images':>6} {'naive/s':>8} {'fast/s':>8} {'ratio':>6} | "
        f"{'pHash max':>9} {'p95':>4} {'<=2':>6} | {'PDQ max':>7} {'p95':>4} {'<=10':>6} {'PDQ n':>5}"
    )
    print(header)
    print("-" * len(header))
    for text in args.sizes.split(","):
        size = tuple(int(part) for part in text.split("x"))
        data = corpus(size)
        naive_rate, naive = rate(compute_signals_naive, data, args.repeat)
        fast_rate, quick = rate(fast, data, args.repeat)
        phash = np.array([(a.phash ^ b.phash).bit_count() for a, b in zip(naive, quick, strict=True)])
        pdq = np.array(
            [(a.pdq ^ b.pdq).bit_count() for a, b in zip(naive, quick, strict=True) if a.pdq and b.pdq is not None]
        )
        print(
            f"{text:>10} {len(data):>6} {naive_rate:>8.1f} {fast_rate:>8.1f} {fast_rate / naive_rate:>5.1f}x | "
            f"{phash.max():>9} {np.percentile(phash, 95):>4.0f} {np.mean(phash <= 2):>6.1%} | "
            f"{pdq.max():>7} {np.percentile(pdq, 95):>4.0f} {np.mean(pdq <= 10):>6.1%} {len(pdq):>5}"
        )


if __name__ == "__main__":
    main()
