"""Bench: how often an edited copy of a picture is found and verified, and how often a stranger's is.

    .venv/bin/python bench/match_quality.py [--photos 16] [--faces 100] [--only CLASS]

The corpus is real photographs that installed packages ship: scikit-image's sample photos (each the
reference a requester holds, saved as JPEG quality 92) and scikit-image's face crops (``lfw_subset``,
100 faces of 25x25 pixels, scaled up to 200x200: similar pictures, the hard negatives). Each photo is
edited in every class below, with parameters spread over the class's range, and saved as the copy a
site would serve (JPEG quality 85 unless the edit is the encoding itself).

For each class it prints the share of copies that reach weak or strong evidence:

- ``named URL``: the requester names the copy's URL; the server expands the fetched copy
  (``candidate_variants``) and compares every candidate variant with every reference variant;
- ``discovery``: the copy is a dataset row (one signal set); the matcher finds rows within the
  thresholds of any reference variant, and the found row is compared with every reference variant;

each beside today's pipeline (the picture's own signals only, one family or both within the
thresholds), in the same run. Then false matches: every reference against every copy of every other
picture (and every face against every other face), counting strong and weak verdicts, for the
named-URL comparison and for discovery. scikit-image's motorcycle stereo pair (two photos of one
scene, a known pHash collision) is among the distinct pairs.

``--watermark-sweep`` checks that the watermark class generalises past its three edits (one logo, one
place): discovery only, each photo with scikit-image's logo pasted at 3, 6 and 10% of the picture, 0, 2, 5 and
8% of each side in from three corners, as an opaque square, as a disc (the picture showing around it), as a
dark disc and as a translucent white disc (a mark), 2,304 copies, found by this variant set and by it without
its badges (``variants.is_guessed_patch``). The default corpus is unchanged by it.

Finally the cost: hashing one 12-megapixel JPEG and PNG with all reference variants, one fetched
12-megapixel JPEG with all candidate variants, and a request at its limits: 20 named URLs, each a
different 12-megapixel JPEG fetched on loopback, against 5 reference pictures (``--timing-only``).
Single process; the machine may be shared (the load average is printed).
"""

import argparse
import io
import os
import pickle
import sys
import tempfile
import threading
import time
from collections import defaultdict
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optout.imaging import candidates, hashes, variants  # noqa: E402
from optout.imaging.compare import best_match, compare  # noqa: E402
from optout.imaging.hashbits import hamming  # noqa: E402

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
    "retina",
    "ihc",
    "color",
    "camera",
    "coins",
    "moon",
    "cell",
    "brick",
    "grass",
    "gravel",
)
NEGATIVE_ONLY = ("motorcycle_right", "clock_motion", "page", "text")
LIMITS = {"max_bytes": 1 << 30, "max_pixels": 1 << 28}
PHASH, PDQ, REVIEW = 8, 31, 50  # the default settings
SAMPLE_DIR = Path(hashes.__file__).resolve().parents[2] / ".venv"


def _sample(name: str) -> Image.Image:
    from skimage import data

    path = next(Path(data.__file__).parent.glob(f"{name}.*"))
    with Image.open(path) as image:
        return image.convert("RGB")


def _faces(count: int) -> list[Image.Image]:
    from skimage import data

    faces = data.lfw_subset()[:count]
    return [
        Image.fromarray((face * 255).astype(np.uint8), "L").resize((200, 200), Image.Resampling.LANCZOS).convert("RGB")
        for face in faces
    ]


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# --- Edits: (class, label, function of the image returning bytes) ------------------------


def _text(draw: ImageDraw.ImageDraw, box, text: str, fill) -> None:
    x0, y0, x1, y1 = box
    size = max(8, int((y1 - y0) * 0.5))
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):
        font = None
    draw.text((x0 + size // 2, y0 + (y1 - y0 - size) // 2), text, fill=fill, font=font)


def _caption(image, share, where, background, ink):
    w, h = image.size
    bar = int(h * share)
    out = Image.new("RGB", (w, h + bar), background)
    out.paste(image, (0, bar if where == "top" else 0))
    draw = ImageDraw.Draw(out)
    y = 0 if where == "top" else h
    _text(draw, (0, y, w, y + bar), "me and my friends at the lake, summer 2019  #holiday", ink)
    return out


def _pad(image, share, colour):
    w, h = image.size
    pw, ph = int(w * share), int(h * share)
    return ImageOps.expand(image, border=(pw, ph, pw, ph), fill=colour)


def _screenshot(image, style):
    """The picture as a screenshot of a page showing it: browser chrome on top, page margins around."""
    w, h = image.size
    if style == "phone":
        out = Image.new("RGB", (w + w // 10, h + h // 2), (250, 250, 250))
        out.paste(image, (w // 20, h // 5))
        draw = ImageDraw.Draw(out)
        draw.rectangle((0, 0, out.width, h // 14), fill=(30, 30, 30))
        _text(draw, (0, 0, out.width, h // 14), "9:41   LTE  87%", (255, 255, 255))
        _text(draw, (0, h // 5 + h, out.width, h // 5 + h + h // 8), "412 likes  view all comments", (20, 20, 20))
        return out
    top = h // 8
    out = Image.new("RGB", (w + w // 6, h + top + h // 10), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, out.width, top), fill=(222, 225, 230))
    draw.rounded_rectangle((out.width // 8, top // 4, out.width * 7 // 8, top * 3 // 4), 6, fill=(255, 255, 255))
    _text(draw, (out.width // 8, top // 4, out.width, top * 3 // 4), "https://example.com/photos/1234", (60, 60, 60))
    out.paste(image, (w // 12, top + h // 20))
    return out


def _watermark_text(image, share):
    w, h = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    bh = int(h * share)
    bw = int(w * 0.6)
    draw.rectangle((w - bw - 10, h - bh - 10, w - 10, h - 10), fill=(0, 0, 0, 90))
    _text(draw, (w - bw - 10, h - bh - 10, w - 10, h - 10), "(c) stockphotos.example", (255, 255, 255, 200))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _watermark_logo(image, share):
    from skimage import data

    logo_path = next(Path(data.__file__).parent.glob("logo.*"))
    w, h = image.size
    side = int((w * h * share) ** 0.5)
    with Image.open(logo_path) as logo:
        logo = logo.convert("RGBA").resize((side, side), Image.Resampling.LANCZOS)
    out = image.convert("RGBA")
    out.alpha_composite(logo, (w - side - w // 30, h // 30))
    return out.convert("RGB")


def _sweep_logo(kind, side):
    from skimage import data

    logo_path = next(Path(data.__file__).parent.glob("logo.*"))
    if kind == "mark":
        logo = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        ImageDraw.Draw(logo).ellipse((0, 0, side - 1, side - 1), fill=(255, 255, 255, 128))
        return logo
    with Image.open(logo_path) as image:
        logo = image.convert("RGBA").resize((side, side), Image.Resampling.LANCZOS)
    if kind in ("disc", "dark disc"):
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, side - 1, side - 1), fill=255)
        logo.putalpha(mask)
    if kind == "dark disc":
        dark = ImageOps.invert(logo.convert("RGB")).point(lambda value: value // 2)
        logo = Image.merge("RGBA", (*dark.split(), logo.getchannel("A")))
    return logo


def _with_sweep_logo(image, kind, share, margin, bottom, right):
    w, h = image.size
    side = int((w * h * share) ** 0.5)
    x = w - side - int(w * margin) if right else int(w * margin)
    y = h - side - int(h * margin) if bottom else int(h * margin)
    out = image.convert("RGBA")
    out.alpha_composite(_sweep_logo(kind, side), (x, y))
    return out.convert("RGB")


def _watermark_sweep(photo_count: int) -> None:
    found = defaultdict(lambda: defaultdict(int))
    for name in PHOTOS[:photo_count]:
        image = _sample(name)
        refs = variants.reference_variants(_decode(_jpeg(image, 92)))
        older = [ref for ref in refs if not variants.is_guessed_patch(ref.name)]
        for kind in ("square", "disc", "dark disc", "mark"):
            for share in (0.03, 0.06, 0.1):
                for margin in (0.0, 0.02, 0.05, 0.08):
                    for bottom, right in ((False, True), (True, False), (True, True)):
                        row = variants.Variant(
                            variants.IDENTITY,
                            hashes.signals_of(
                                _decode(_jpeg(_with_sweep_logo(image, kind, share, margin, bottom, right)))
                            ),
                        )
                        now, before = _found(refs, row) is not None, _found(older, row) is not None
                        for key in ("all", f"kind {kind}", f"share {share:.0%}", f"margin {margin:.0%}"):
                            found[key]["n"] += 1
                            found[key]["now"] += now
                            found[key]["before"] += before
    print(f"discovery of logos, variant set {variants.VARIANT_SET} with and without its badges:")
    print(f"{'':<16} {'copies':>6} {'badges':>8} {'none':>8}")
    for key, counts in sorted(found.items(), key=lambda item: (item[0] != "all", item[0].split()[0])):
        n = counts["n"]
        print(f"{key:<16} {n:>6} {counts['now'] / n:>8.1%} {counts['before'] / n:>8.1%}")


def _hue(image, degrees):
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(degrees * 256 / 360)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _crop(image, keep, fx, fy):
    w, h = image.size
    cw, ch = int(w * keep), int(h * keep)
    x, y = int((w - cw) * fx), int((h - ch) * fy)
    return image.crop((x, y, x + cw, y + ch))


def _rotate(image, degrees, mode):
    if mode == "expand":
        return image.rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    return image.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


def _encode(image, fmt, quality):
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=quality)
    return buffer.getvalue()


def edits():
    j = _jpeg
    out = [
        ("resize", "50%", lambda im: j(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS))),
        ("resize", "thumbnail 160", lambda im: j(ImageOps.contain(im, (160, 160)))),
        ("resize", "upscaled 150%", lambda im: j(im.resize((im.width * 3 // 2, im.height * 3 // 2)))),
        ("recompress", "JPEG q30", lambda im: _encode(im, "JPEG", 30)),
        ("recompress", "JPEG q55", lambda im: _encode(im, "JPEG", 55)),
        ("recompress", "WebP q40", lambda im: _encode(im, "WEBP", 40)),
        ("photometric", "brighter 1.3", lambda im: j(ImageEnhance.Brightness(im).enhance(1.3))),
        ("photometric", "darker 0.7", lambda im: j(ImageEnhance.Brightness(im).enhance(0.7))),
        ("photometric", "contrast 0.6", lambda im: j(ImageEnhance.Contrast(im).enhance(0.6))),
        ("photometric", "contrast 1.5", lambda im: j(ImageEnhance.Contrast(im).enhance(1.5))),
        ("photometric", "hue +40", lambda im: j(_hue(im, 40))),
        ("photometric", "hue +120", lambda im: j(_hue(im, 120))),
        ("greyscale", "greyscale", lambda im: j(im.convert("L"))),
        ("blur", "gaussian 1", lambda im: j(im.filter(ImageFilter.GaussianBlur(1)))),
        ("blur", "gaussian 2.5", lambda im: j(im.filter(ImageFilter.GaussianBlur(2.5)))),
        ("mirror", "left-right", lambda im: j(ImageOps.mirror(im))),
        ("mirror", "top-bottom", lambda im: j(ImageOps.flip(im))),
        ("turn", "90", lambda im: j(im.transpose(Image.Transpose.ROTATE_90))),
        ("turn", "180", lambda im: j(im.transpose(Image.Transpose.ROTATE_180))),
        ("turn", "270", lambda im: j(im.transpose(Image.Transpose.ROTATE_270))),
    ]
    for degrees in (1, -2, 3, -4, 5):
        out.append(("rotate", f"{degrees} deg corners", lambda im, d=degrees: j(_rotate(im, d, "corners"))))
        out.append(("rotate", f"{degrees} deg expand", lambda im, d=degrees: j(_rotate(im, d, "expand"))))
    for keep in (0.95, 0.9, 0.85, 0.8):
        out.append(("crop >= 80%", f"centre {keep:.0%}", lambda im, k=keep: j(_crop(im, k, 0.5, 0.5))))
    for keep, fx, fy in ((0.9, 0.1, 0.8), (0.85, 0.9, 0.3), (0.8, 0.2, 0.1), (0.8, 0.7, 0.9), (0.8, 1.0, 0.0)):
        out.append(("crop >= 80%", f"{keep:.0%} at {fx},{fy}", lambda im, k=keep, x=fx, y=fy: j(_crop(im, k, x, y))))
    for keep, fx, fy in ((0.75, 0.5, 0.5), (0.7, 0.5, 0.5), (0.75, 0.2, 0.7), (0.7, 0.0, 1.0), (0.7, 0.8, 0.35)):
        out.append(("crop 70-80%", f"{keep:.0%} at {fx},{fy}", lambda im, k=keep, x=fx, y=fy: j(_crop(im, k, x, y))))
    for share, colour in ((0.05, (255, 255, 255)), (0.1, (0, 0, 0)), (0.15, (255, 255, 255)), (0.2, (40, 90, 160))):
        out.append(("border", f"{share:.0%} {colour}", lambda im, s=share, c=colour: j(_pad(im, s, c))))
    out.append(("screenshot", "desktop browser", lambda im: j(_screenshot(im, "desktop"))))
    out.append(("screenshot", "phone app", lambda im: j(_screenshot(im, "phone"))))
    for share, where, bg, ink in ((0.1, "bottom", "white", "black"), (0.15, "top", "black", "white")):
        out.append(
            ("caption", f"{share:.0%} {where}", lambda im, s=share, w=where, b=bg, k=ink: j(_caption(im, s, w, b, k)))
        )
    out.append(("caption", "20% bottom", lambda im: j(_caption(im, 0.2, "bottom", (20, 20, 20), "white"))))
    out.append(("watermark", "text 6%", lambda im: j(_watermark_text(im, 0.1))))
    out.append(("watermark", "logo 5%", lambda im: j(_watermark_logo(im, 0.05))))
    out.append(("watermark", "logo 10%", lambda im: j(_watermark_logo(im, 0.10))))
    return out


# --- Signals ---------------------------------------------------------------------------


def _decode(data: bytes) -> hashes.Decoded:
    return hashes.decode_image(data, **LIMITS)


def _pairs_close(refs, cands) -> bool:
    """A cheap bound: could any pair of these be within the review thresholds at all?"""
    for r in refs:
        for c in cands:
            if hamming(r.signals.phash, c.signals.phash) <= PHASH:
                return True
            if (
                r.signals.pdq is not None
                and c.signals.pdq is not None
                and hamming(r.signals.pdq, c.signals.pdq) <= REVIEW
            ):
                return True
    return False


def _verdict(refs, cands) -> str | None:
    if not _pairs_close(refs, cands):
        return None
    return best_match([refs], cands, phash_threshold=PHASH, pdq_threshold=PDQ, pdq_review=REVIEW).strength


def _found(refs, row) -> str | None:
    """Discovery: found by the matcher (some reference variant within a threshold), then compared."""
    near = any(
        hamming(r.signals.phash, row.signals.phash) <= PHASH
        or (
            r.signals.pdq is not None and row.signals.pdq is not None and hamming(r.signals.pdq, row.signals.pdq) <= PDQ
        )
        for r in refs
    )
    if not near:
        return None
    return best_match([refs], [row], phash_threshold=PHASH, pdq_threshold=PDQ, pdq_review=REVIEW).strength


def _today(ref, row) -> str | None:
    return compare(ref.signals, row.signals, phash_threshold=PHASH, pdq_threshold=PDQ).strength


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--faces", type=int, default=100)
    parser.add_argument("--only", default="")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--cache", default="", help="keep the copies' signals in this file and reuse them")
    parser.add_argument("--watermark-sweep", action="store_true", help="discovery of logos of many kinds and places")
    args = parser.parse_args()

    if args.watermark_sweep:
        _watermark_sweep(args.photos)
        return
    if args.timing_only:
        _timing()
        return
    started = time.monotonic()
    references, copies, face_refs = _corpus(args)
    print(
        f"corpus: {len(references)} photos, {len(face_refs)} faces, {len(copies)} copies; built in {time.monotonic() - started:.0f} s"
    )
    _report(references, copies, face_refs)
    if not args.no_timing:
        _timing()


def _corpus(args):
    photos = {name: _sample(name) for name in PHOTOS[: args.photos]}
    references = {name: variants.reference_variants(_decode(_jpeg(image, 92))) for name, image in photos.items()}
    faces = _faces(args.faces)
    face_refs = [
        (f"face{number}", variants.reference_variants(_decode(_jpeg(face, 92)))) for number, face in enumerate(faces)
    ]
    if args.cache and Path(args.cache).is_file():  # the copies' signals only: references are always computed afresh
        with open(args.cache, "rb") as file:
            return references, pickle.load(file), face_refs
    copies = []  # (source, class, label, candidate variants, row variant)
    for name, image in photos.items():
        for klass, label, edit in edits():
            if args.only and klass != args.only:
                continue
            decoded = _decode(edit(image))
            cands = candidates.candidate_variants(decoded)
            copies.append((name, klass, label, cands, cands[0]))
    for name in NEGATIVE_ONLY:
        decoded = _decode(_jpeg(_sample(name)))
        cands = candidates.candidate_variants(decoded)
        copies.append((name, "negative", "unedited", cands, cands[0]))
    for number, face in enumerate(faces):
        cands = candidates.candidate_variants(_decode(_jpeg(ImageOps.mirror(face))))
        copies.append((f"face{number}", "face", "mirrored", cands, cands[0]))
    if args.cache:
        with open(args.cache, "wb") as file:
            pickle.dump(copies, file)
    return references, copies, face_refs


def _report(references, copies, face_refs) -> None:
    # Recall per class.
    recall = defaultdict(lambda: defaultdict(int))
    misses, unfound = defaultdict(list), defaultdict(list)
    for source, klass, label, cands, row in copies:
        if source not in references:
            continue
        refs = references[source]
        stats = recall[klass]
        stats["n"] += 1
        stats["named"] += _verdict(refs, cands) is not None
        stats["discovery"] += _found(refs, row) is not None
        stats["today"] += _today(refs[0], row) is not None
        if _verdict(refs, cands) is None:
            misses[klass].append(f"{source} {label}")
        if _found(refs, row) is None:
            unfound[klass].append(f"{source} {label}")
    print()
    print(f"{'class':<14} {'copies':>6} {'named URL':>10} {'discovery':>10} {'today':>7}")
    for klass, stats in recall.items():
        n = stats["n"]
        print(
            f"{klass:<14} {n:>6} {stats['named'] / n:>10.1%} {stats['discovery'] / n:>10.1%} {stats['today'] / n:>7.1%}"
        )
    for klass, missed in misses.items():
        print(f"  missed ({klass}): {', '.join(missed[:12])}{' ...' if len(missed) > 12 else ''}")
    for klass, missed in unfound.items():
        if klass in ("crop >= 80%", "crop 70-80%", "screenshot", "watermark", "photometric"):
            print(f"  not discovered ({klass}): {', '.join(missed[:10])}{' ...' if len(missed) > 10 else ''}")

    # False matches over distinct pictures.
    counts = defaultdict(int)
    all_refs = list(references.items()) + face_refs
    for ref_name, refs in all_refs:
        for source, _klass, label, cands, row in copies:
            if source == ref_name:
                continue
            counts["pairs"] += 1
            named = _verdict(refs, cands)
            found = _found(refs, row)
            today = _today(refs[0], row)
            counts[f"named {named}"] += 1
            counts[f"discovery {found}"] += 1
            counts[f"today {today}"] += 1
            if named or found:
                counts["examples"] += 1
                if counts["examples"] <= 10:
                    print(f"  false {named or found}: reference {ref_name} ~ {source} {label}")
    pairs = counts["pairs"]
    print()
    print(f"false matches over {pairs} pairs of distinct pictures (strong / weak):")
    for what in ("named", "discovery", "today"):
        strong, weak = counts[f"{what} strong"], counts[f"{what} weak"]
        print(f"  {what:<10} strong {strong:>4}   weak {weak:>4} ({weak / pairs:.3%})")


def _timing() -> None:
    big = _sample("astronaut").resize((4000, 3000), Image.Resampling.LANCZOS)
    print(f"\ncost (load average {os.getloadavg()[0]:.2f}):")
    for label, data in (("JPEG", _jpeg(big, 90)), ("PNG", _encode(big, "PNG", None))):
        best = min(_clock(lambda d=data: variants.reference_variants(_decode(d))) for _ in range(3))
        plain = min(_clock(lambda d=data: hashes.signals_of(_decode(d))) for _ in range(3))
        print(
            f"12 MP {label}: all {len(variants.REFERENCE_VARIANTS)} reference variants {best * 1000:.0f} ms "
            f"(plain signals {plain * 1000:.0f} ms)"
        )
    data = _jpeg(big, 90)
    best = min(_clock(lambda: candidates.candidate_variants(_decode(data))) for _ in range(3))
    print(f"12 MP JPEG fetched: all candidate variants {best * 1000:.0f} ms")
    _request_at_its_limits()


def _request_at_its_limits() -> None:
    """A request naming 20 URLs, each a different 12 MP JPEG served on loopback: fetch, decode, expand, compare.

    Against 5 reference pictures with every variant, as verification does item by item (the database
    work aside: a few queries per item). The default task soft time limit is 270 s (CELERY_TASK_TIME_LIMIT
    300 s less 30 s).
    """
    from optout.fetch import fetch_image

    pictures = [variants.reference_variants(_decode(_jpeg(_sample(name), 92))) for name in PHOTOS[:5]]
    with tempfile.TemporaryDirectory() as folder:
        for number in range(20):
            image = _sample(PHOTOS[number % len(PHOTOS)])
            if number >= len(PHOTOS):
                image = ImageOps.mirror(image)
            image = image.resize((4000, 3000), Image.Resampling.LANCZOS)
            (Path(folder) / f"{number}.jpg").write_bytes(_jpeg(image, 90))
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            started = time.perf_counter()
            slowest = 0.0
            for number in range(20):
                item_started = time.perf_counter()
                url = f"http://127.0.0.1:{server.server_port}/{number}.jpg"
                fetched = fetch_image(url, allow_loopback=True, timeout=15, max_bytes=20 * 1024 * 1024)
                cands = candidates.candidate_variants(hashes.decode_image(fetched.data, **LIMITS))
                best_match(pictures, cands, phash_threshold=PHASH, pdq_threshold=PDQ, pdq_review=REVIEW)
                slowest = max(slowest, time.perf_counter() - item_started)
            total = time.perf_counter() - started
        finally:
            server.shutdown()
    print(
        f"a request with 5 pictures and 20 named 12 MP URLs (fetched on loopback): {total:.1f} s, "
        f"slowest item {slowest:.1f} s; soft time limit 270 s (load average {os.getloadavg()[0]:.2f})"
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _clock(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
