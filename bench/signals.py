"""Bench: image signals, fast pipeline against the naive one; one 12-megapixel photo with all its variants.

    .venv/bin/python bench/signals.py [--sizes 1024x768,3000x2000] [--repeat 2] [--variants-only] [--no-browser]

The corpus is scikit-image's sample photographs (no download), each also mirrored and
centre-cropped, resized to each size and saved as JPEG quality 90 in memory. For each size
it prints images per second of the naive pipeline (full decode, ``imagehash.phash``,
``pdqhash.compute``) and of ``compute_signals``, their ratio, and how far apart their hashes
are (Hamming distance: max, 95th percentile, share within 2 bits for pHash and within 10
bits for PDQ). Single process, single thread.

Then the reference variants (``optout.imaging.reference_variants``, every variant of ``VARIANT_SET``) of
one 12-megapixel JPEG (4000x3000, quality 90), on the server and in headless Chromium
(``static/js/signals.js``' ``computeSignals``, Debian's /usr/bin/chromium driven by Playwright as the e2e
tests do, the page served from loopback), each beside its baselines in the same run: the plain signals
alone, and variant set 1 (every crop cut from the reduced luma, as it was before the variant grid; the
browser's set-1 module is read from git, ``SET1_COMMIT``). "cold" is the first picture of its size in
the process or page (its kernels built), "warm" the best of three more. The load average is printed.
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optout.imaging import (  # noqa: E402
    compute_signals,
    compute_signals_naive,
    decode_image,
    descriptor_key,
    kernels,
    reference_variants,
    signals_of,
    variants,
)
from tests.images import PHOTOS, photo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SET1_COMMIT = "a44acb4"  # static/js/signals.js and optout/imaging/variants.py at variant set 1
LIMITS = {"max_bytes": 1 << 30, "max_pixels": 1 << 28}

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
    parser.add_argument("--variants-only", action="store_true", help="only the 12-megapixel variants timing")
    parser.add_argument("--no-browser", action="store_true", help="leave out headless Chromium")
    args = parser.parse_args()
    if not args.variants_only:
        fast_against_naive(args)
    print()
    data = twelve_megapixels()
    server_variants(data)
    if not args.no_browser:
        browser_variants(data)


def fast_against_naive(args) -> None:
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


def _set1_variants(decoded) -> list:
    """Variant set 1 as it was: the same dihedral turns, every crop cut from the reduced luma itself."""
    out = reference_variants(decoded)[: 1 + len(variants.DIHEDRAL)]
    rows, cols = decoded.luma.shape
    for name, keep, fx, fy in variants.SET_1_CROPS:
        top, left, height, width = variants.crop_box(rows, cols, keep, fx, fy)
        out.append(
            variants.Variant(name, variants.signals_of_luma(decoded.luma[top : top + height, left : left + width]))
        )
    return out


def _clear_kernels() -> None:
    kernels.lanczos_kernel.cache_clear()
    kernels.jarosz_kernel.cache_clear()


def _timed(function, data: bytes, cold: bool) -> float:
    if cold:
        _clear_kernels()
    started = time.perf_counter()
    function(decode_image(data, **LIMITS))
    return time.perf_counter() - started


def twelve_megapixels() -> bytes:
    buffer = io.BytesIO()
    photo("astronaut").resize((4000, 3000), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def server_variants(data: bytes) -> None:
    compute_signals(data, **LIMITS)  # imports (scipy, under imagehash) happen once per process
    print(f"12 MP JPEG ({len(data)} bytes), decode included, load average {os.getloadavg()[0]:.2f}:")
    print(f"{'server':>8} {'what':<44} {'cold ms':>8} {'warm ms':>8}")
    for label, function in (
        ("plain signals (baseline)", signals_of),
        ("variant set 1, crops from the luma (baseline)", _set1_variants),
        (f"variant set {variants.VARIANT_SET}: all {len(variants.REFERENCE_VARIANTS)} variants", reference_variants),
    ):
        cold = _timed(function, data, cold=True)
        warm = min(_timed(function, data, cold=False) for _ in range(3))
        print(f"{'':>8} {label:<44} {cold * 1000:>8.0f} {warm * 1000:>8.0f}")


_BROWSER_RUN = """async ([module, runs]) => {
    const { computeSignals } = await import(module);
    const blob = await (await fetch("/photo.jpg")).blob();
    const times = [];
    let out = null;
    for (let i = 0; i < runs; i++) {
        const started = performance.now();
        out = await computeSignals(blob);
        times.push(performance.now() - started);
    }
    return { times, variants: Object.keys(out.variants || {}).length, variant_set: out.variant_set };
}"""


def browser_variants(data: bytes) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "photo.jpg").write_bytes(data)
        (root / "index.html").write_text("<!doctype html><title>bench</title>")
        (root / "js").symlink_to(ROOT / "static" / "js")
        (root / "set1").mkdir()
        old = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{SET1_COMMIT}:static/js/signals.js"], capture_output=True, check=True
        )
        (root / "set1" / "signals.js").write_bytes(old.stdout)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                try:
                    print(
                        f"{'Chromium':>8} {'what':<44} {'cold ms':>8} {'warm ms':>8}  (load average {os.getloadavg()[0]:.2f})"
                    )
                    for label, module in (
                        ("variant set 1, crops from the luma (baseline)", "/set1/signals.js"),
                        (f"variant set {variants.VARIANT_SET}: computeSignals, every variant", "/js/signals.js"),
                    ):
                        page = browser.new_page()  # a fresh page: its kernel cache starts empty
                        page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
                        result = page.evaluate(_BROWSER_RUN, [module, 4])
                        page.close()
                        cold, *warm = result["times"]
                        print(f"{'':>8} {label:<44} {cold:>8.0f} {min(warm):>8.0f}  ({result['variants']} variants)")
                finally:
                    browser.close()
        finally:
            server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    main()
