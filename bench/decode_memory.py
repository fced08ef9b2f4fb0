"""Bench: peak resident memory of one decode, for the worst inputs we can build at the caps.

    .venv/bin/python bench/decode_memory.py [--max-pixels 50000000] [--max-bytes 20971520] [--only NAME,...]

Every mode Pillow opens for the allowed formats (JPEG L/RGB/CMYK; PNG 1, L, L with transparency, P with
transparency, LA, I;16, RGB, RGBA and their 16-bit forms; WebP RGB and RGBA, lossless; GIF with
transparency), as large as the pixel cap allows (square, and a thin strip whose short side keeps the
decoder from reducing it). Inputs are built first, in this process; then each one is decoded in a fresh
subprocess, once through ``compute_signals`` (verification, intake) and once through the reviewer
preview (``thumbnail_jpeg``, which runs ``compute_signals`` first). A subprocess prints its peak resident
set size (``VmHWM``) before the decode, after the imports, and after it. The figure that counts is
the peak of the whole process: it must stay under 256 MB. Inputs the decoder refuses print their
refusal instead (a refusal at the caps is the bound doing its work).
"""

import argparse
import functools
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optout.imaging import decode  # noqa: E402
from optout.imaging.descriptor import REDUCE_MIN_SIDE  # noqa: E402
from tests.images import large_png  # noqa: E402

BUDGET_MB = 256


def _pillow(mode: str, size: tuple[int, int], fmt: str, **params) -> bytes:
    from PIL import Image

    width, height = size
    # A gradient built small and stretched: cheap to make, not a flat colour a codec could special-case.
    small = Image.linear_gradient("L").resize((64, 64))
    image = small.resize(size).convert(mode) if mode not in ("RGBA", "LA") else None
    if image is None:
        image = Image.merge(
            "RGBA", [small.resize(size)] * 3 + [small.transpose(Image.Transpose.ROTATE_90).resize(size)]
        )
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def largest(fits, low: int, high: int) -> int:
    """The largest n in [low, high] with fits(n) (fits is monotone), or low."""
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def accepted(size: tuple[int, int], mode: str, fmt: str) -> bool:
    reduce_by = max(1, min(size) // REDUCE_MIN_SIDE)
    return decode.decode_cost(size, mode, fmt, reduce_by) <= decode.MAX_DECODE_BYTES


def inputs(max_pixels: int) -> dict[str, object]:
    """Each case at the pixel cap (square, and a thin strip the decoder cannot reduce), and, when the
    memory budget refuses that, the largest one it accepts."""
    side = math.isqrt(max_pixels)
    palette = bytes(range(256)) * 3
    # (name, Pillow mode once opened, format, builder of (width, height))
    kinds = [
        ("png-1", "1", "PNG", lambda w, h: large_png(w, h, 1, 0)),
        ("png-L", "L", "PNG", lambda w, h: large_png(w, h, 8, 0)),
        ("png-L-transparency", "L", "PNG", lambda w, h: large_png(w, h, 8, 0, trns=b"\0\x10")),
        ("png-P-transparency", "P", "PNG", lambda w, h: large_png(w, h, 8, 3, plte=palette, trns=b"\x80" * 256)),
        ("png-LA", "LA", "PNG", lambda w, h: large_png(w, h, 8, 4)),
        ("png-LA-16bit", "RGBA", "PNG", lambda w, h: large_png(w, h, 16, 4)),
        ("png-I;16", "I;16", "PNG", lambda w, h: large_png(w, h, 16, 0)),
        ("png-RGB", "RGB", "PNG", lambda w, h: large_png(w, h, 8, 2)),
        ("png-RGB-16bit", "RGB", "PNG", lambda w, h: large_png(w, h, 16, 2)),
        ("png-RGBA", "RGBA", "PNG", lambda w, h: large_png(w, h, 8, 6)),
        ("png-RGBA-16bit", "RGBA", "PNG", lambda w, h: large_png(w, h, 16, 6)),
        ("jpeg-L", "L", "JPEG", lambda w, h: _pillow("L", (w, h), "JPEG", quality=90)),
        ("jpeg-RGB", "RGB", "JPEG", lambda w, h: _pillow("RGB", (w, h), "JPEG", quality=90)),
        ("jpeg-CMYK", "CMYK", "JPEG", lambda w, h: _pillow("CMYK", (w, h), "JPEG", quality=90)),
        ("webp-RGB", "RGB", "WEBP", lambda w, h: _pillow("RGB", (w, h), "WEBP", lossless=True, method=0)),
        ("webp-RGBA", "RGBA", "WEBP", lambda w, h: _pillow("RGBA", (w, h), "WEBP", lossless=True, method=0)),
        ("gif-P-transparency", "P", "GIF", lambda w, h: _pillow("P", (w, h), "GIF", transparency=0)),
    ]
    cases = {}
    for name, mode, fmt, build in kinds:
        limit = 16383 if fmt == "WEBP" else 65500
        square = min(side, limit)
        thin = (767, min(max_pixels // 767, limit))  # 767 px across: never reduced
        shapes = {"": (square, square), "-thin": thin}
        # JPEG's decoder reduces by the long side as well (DCT scaling): no budget refusal to search for.
        if fmt != "JPEG" and not accepted((square, square), mode, fmt):
            best = largest(lambda n, m=mode, f=fmt: accepted((n, n), m, f), 1, square)
            shapes["-largest"] = (best, best)
        if not accepted(thin, mode, fmt):
            shapes["-thin-largest"] = (767, largest(lambda n, m=mode, f=fmt: accepted((767, n), m, f), 1, thin[1]))
        for suffix, (w, h) in shapes.items():
            cases[f"{name}{suffix}"] = (f"{w}x{h}", functools.partial(build, w, h))
    return cases


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from optout.imaging import ImageRejected, compute_signals
from requests_app.preview import thumbnail_jpeg

def peak_mb():
    # VmHWM, not ru_maxrss: Linux carries a parent's ru_maxrss over fork and exec.
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

data = open({path!r}, "rb").read()
before = peak_mb()
started = time.perf_counter()
try:
    if {what!r} == "signals":
        compute_signals(data, max_bytes={max_bytes}, max_pixels={max_pixels})
    else:
        thumbnail_jpeg(data, max_bytes={max_bytes}, max_pixels={max_pixels})
    outcome = "decoded"
except ImageRejected as exc:
    outcome = "refused: " + exc.code
print(json.dumps({{"before": before, "peak": peak_mb(), "seconds": time.perf_counter() - started, "outcome": outcome}}))
"""


def measure(path: str, what: str, *, max_bytes: int, max_pixels: int) -> dict:
    code = CHILD.format(root=str(ROOT), path=path, what=what, max_bytes=max_bytes, max_pixels=max_pixels)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        return {"before": 0, "peak": 0, "seconds": 0, "outcome": "crashed: " + result.stderr.strip()[-200:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-pixels", type=int, default=50_000_000, help="the pixel cap (default: settings default)")
    parser.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024, help="the byte cap (default: settings)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    cases = inputs(args.max_pixels)
    if args.only:
        cases = {name: build for name, build in cases.items() if name in args.only.split(",")}
    print(f"pixel cap {args.max_pixels:,}, byte cap {args.max_bytes:,}; budget {BUDGET_MB} MB peak RSS per decode")
    print(f"{'input':26} {'size':>12} {'bytes':>10} {'path':8} {'base MB':>8} {'peak MB':>8} {'s':>6}  outcome")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for name, (size, build) in cases.items():
            data = build()
            path = os.path.join(folder, name)
            with open(path, "wb") as out:
                out.write(data)
            del data
            for what in ("signals", "preview"):
                row = measure(path, what, max_bytes=args.max_bytes, max_pixels=args.max_pixels)
                worst = max(worst, row["peak"])
                flag = "" if row["peak"] <= BUDGET_MB else "  OVER BUDGET"
                print(
                    f"{name:26} {size:>12} {os.path.getsize(path):>10,} {what:8} {row['before']:>8.0f} {row['peak']:>8.0f}"
                    f" {row['seconds']:>6.2f}  {row['outcome']}{flag}",
                    flush=True,
                )
            os.unlink(path)
    print(f"worst peak: {worst:.0f} MB ({'within' if worst <= BUDGET_MB else 'OVER'} the {BUDGET_MB} MB budget)")
    return 0 if worst <= BUDGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
