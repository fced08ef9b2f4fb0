"""Bounded decoding: memory per decode, decodes at once, and JPEGs whose data stops early."""

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from optout.imaging import ImageRejected, compute_signals, decode, hashes
from tests import images

ROOT = Path(__file__).resolve().parents[3]
CAPS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 50_000_000}
PALETTE = bytes(range(256)) * 3


def peak_memory_mb(data: bytes, folder: Path) -> tuple[float, str]:
    """Peak resident memory (VmHWM) of a fresh process that reads an input and decodes it once."""
    path = folder / "input"
    path.write_bytes(data)
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from optout.imaging import ImageRejected, compute_signals
data = open({str(path)!r}, "rb").read()
outcome = "decoded"
try:
    compute_signals(data, max_bytes={CAPS["max_bytes"]}, max_pixels={CAPS["max_pixels"]})
except ImageRejected as exc:
    outcome = exc.code
status = open("/proc/self/status").read()
peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
print(json.dumps([peak, outcome]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    peak, outcome = json.loads(result.stdout.strip().splitlines()[-1])
    return peak, outcome


# --- Memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: images.large_png(4500, 4500, 16, 0),  # 16-bit greyscale: once a float64 copy, 1.3 GB at the cap
        lambda: images.large_png(4500, 4500, 8, 6),  # RGBA: once three full-size copies
        # WebP's decoder holds about four copies: the budget allows it fewer pixels.
        lambda: images.encode(Image.new("RGBA", (3300, 3300), (9, 80, 200, 90)), "WEBP", lossless=True, method=0),
    ],
    ids=["png-16-bit-grey", "png-rgba", "webp-lossless-alpha"],  # 20, 20 and 11 megapixels
)
def test_a_wide_mode_near_its_limit_decodes_within_the_memory_budget(build, tmp_path):
    peak, outcome = peak_memory_mb(build(), tmp_path)
    assert outcome == "decoded"
    assert peak < 256, f"peak {peak:.0f} MB"


def test_an_image_whose_mode_needs_more_than_the_budget_is_refused_before_decoding():
    side = 7000  # 49 Mpx: under the pixel cap, but four bytes a pixel
    data = images.large_png(side, side, 8, 6)
    with pytest.raises(ImageRejected) as info:
        compute_signals(data, **CAPS)
    assert info.value.code == "too_many_pixels"
    assert "too large to process" in info.value.message
    # One byte a pixel, the same size: accepted.
    assert compute_signals(images.large_png(side, side, 8, 0), **CAPS).width == side


def test_a_thin_strip_the_decoder_cannot_reduce_is_refused():
    """767 px across is not reduced at all, so its float work would be that of 50 megapixels."""
    with pytest.raises(ImageRejected) as info:
        compute_signals(images.large_png(767, 60_000, 8, 0), **CAPS)
    assert info.value.code == "too_many_pixels"


@pytest.mark.parametrize(
    ("build", "mode"),
    [
        (lambda: images.large_png(900, 700, 16, 0), "I;16"),
        (lambda: images.large_png(900, 700, 8, 6), "RGBA"),
        (lambda: images.large_png(900, 700, 8, 4), "LA"),
        (lambda: images.large_png(900, 700, 8, 3, plte=PALETTE, trns=b"\x80" * 256), "P"),
        (lambda: images.large_png(900, 700, 8, 0, trns=b"\x00\x10"), "L"),
        (lambda: images.large_png(900, 700, 1, 0), "1"),
        (lambda: images.photo_png("coffee", (900, 700), mode="RGBA"), "RGBA"),
        (lambda: images.encode(images.photo("coffee", (900, 700)).convert("CMYK"), "JPEG"), "CMYK"),
    ],
)
@pytest.mark.parametrize("reduce_by", [1, 2, 3])
def test_converting_strip_by_strip_gives_the_same_pixels_as_converting_whole(monkeypatch, build, mode, reduce_by):
    image = Image.open(io.BytesIO(build()))
    image.load()
    assert image.mode == mode
    whole = decode._flatten_whole(image)
    if reduce_by > 1:
        whole = whole.reduce(reduce_by)
    monkeypatch.setattr(decode, "_STRIP_PIXELS", 900 * 5)  # five rows a strip: many strips, a short last one
    strips = decode.flatten(image, reduce_by=reduce_by)
    assert strips.mode == whole.mode and strips.size == whole.size
    assert strips.tobytes() == whole.tobytes()


# --- Decodes at once ---------------------------------------------------------------------------


def test_at_most_a_few_decodes_run_at_once(monkeypatch):
    running = []
    peak = []
    lock = threading.Lock()
    real_open = hashes.open_image

    def slow_open(*args, **kwargs):
        with lock:
            running.append(1)
            peak.append(len(running))
        time.sleep(0.2)
        with lock:
            running.pop()
        return real_open(*args, **kwargs)

    monkeypatch.setattr(hashes, "open_image", slow_open)
    data = images.photo_jpeg("coffee", (200, 150))
    threads = [threading.Thread(target=compute_signals, args=(data,), kwargs=CAPS) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(peak) == decode.MAX_CONCURRENT_DECODES


# --- JPEGs that stop early --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [images.jpeg_with_early_end(), images.jpeg_claiming_size(7000, 7000)],
    ids=["cut-then-end-marker", "64px-of-data-claiming-7000px"],
)
def test_a_jpeg_whose_data_stops_early_is_refused_as_corrupt(data):
    # Pillow alone decodes these, grey where the data is missing.
    Image.open(io.BytesIO(data)).load()
    with pytest.raises(ImageRejected) as info:
        compute_signals(data, **CAPS)
    assert info.value.code == "corrupt"


def test_a_complete_jpeg_in_every_colour_space_is_still_accepted():
    photo = images.photo("coffee", (300, 200))
    for mode in ("RGB", "L", "CMYK"):
        data = images.encode(photo.convert(mode), "JPEG", quality=85)
        assert compute_signals(data, **CAPS).width == 300
    assert compute_signals(images.photo_jpeg("coffee", (300, 200), exif_orientation=6), **CAPS).width == 300  # upright
