"""Variants: the signals of a picture turned, mirrored and cropped, so that edited copies still match.

Reference side (``reference_variants``): a fixed, versioned set (``VARIANT_SET``) computed from one
decoded reference picture, on the server and in ``static/js/signals.js`` alike:

- the 8 dihedral transforms: the picture itself, mirrored, flipped, turned a quarter either way or
  half-way round, and the two diagonal reflections. Each permutes the 32x32 pHash image and the 64x64
  PDQ buffer of the picture (as PDQ's ``dihedral`` does on its DCT), so they cost two DCTs each;
- a grid of crops (``CROPS``): each cuts a share of the *variant grid* and hashes it afresh, both hashes'
  geometry applied to the cut pixels (scale 1). A copy cropped by a reposting site lies inside the
  reference, so one of these lands close to it.

The variant grid (``variant_grid``) is the picture resampled once, with Pillow's Lanczos geometry folded
over the reduced luma like the hashes' own, to GRID_SIDE x GRID_SIDE pixels whatever the picture's size.
Both hashes squash a picture to a square anyway, and squashing commutes with an upright crop, so a crop
of the grid is the crop of the picture at a lower resolution, still far above the 32x32 and 64x64 the
hashes keep. Every crop then has one of a few fixed sizes: its kernels are built once per process, and
hashing all of them costs the same for a 12-megapixel photo as for a thumbnail (set 1 cut each crop from
the reduced luma, some 1000 pixels a side, with kernels built afresh for every picture size).

Every variant is computed from the reduced, upright luma the plain signals come from, so the browser,
given the same luma, computes the same bits. A coarse grid of large crops (each at least 70% of a side)
reveals no more of the picture than its own hashes do: pHash and PDQ keep a few low frequencies of each.

Candidate side (``candidate_variants``, server only): a fetched picture, whose bytes the server holds
while it verifies, is also tried with near-uniform borders trimmed (frames, padding, screenshot
chrome, caption bars), with strips cut from the top or bottom (captions and watermark bars on busy
pictures), and turned back by small angles. Dataset rows keep one signal set each.
"""

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from optout.imaging.hashbits import BadHash
from optout.imaging.hashes import Decoded, ImageSignals, grids_of, signals_from_grids
from optout.imaging.kernels import jarosz_kernel, lanczos_kernel, resample

# Bump when a change here changes which variants exist or how one is computed; it is part of every
# stored reference variant's descriptor (``variant_descriptor``).
VARIANT_SET = 2
IDENTITY = ""
GRID_SIDE = 256  # the variant grid's side: every crop is cut from it

# Each dihedral transform as a map from output cell (y, x) of an n x n grid to the source cell. The names
# say what was done to the reference picture to make the copy.
DIHEDRAL = {
    "mirrored": lambda y, x, n: (y, n - 1 - x),
    "flipped": lambda y, x, n: (n - 1 - y, x),
    "turned-half": lambda y, x, n: (n - 1 - y, n - 1 - x),
    "turned-right": lambda y, x, n: (n - 1 - x, y),
    "turned-left": lambda y, x, n: (x, n - 1 - y),
    "transposed": lambda y, x, n: (x, y),
    "transversed": lambda y, x, n: (n - 1 - x, n - 1 - y),
}

# Crops: (name, share of each side kept, where the kept box starts as a share of what is cut off). pHash
# stays within its threshold for a shift of about 2.5% of a side and a scale change of about 5%: the
# places are that far apart. bench/match_quality.py measures what each size buys.
CROP_PLACES = {
    95: (0.5,),
    90: (0.0, 0.5, 1.0),
    85: (0.0, 0.5, 1.0),
    80: (0.0, 0.25, 0.5, 0.75, 1.0),
    70: (0.0, 0.25, 0.5, 0.75, 1.0),
}
CROPS = tuple(
    (f"crop{size}-{round(fx * 100)}-{round(fy * 100)}", size / 100, fx, fy)
    for size, places in CROP_PLACES.items()
    for fy in places
    for fx in places
)
REFERENCE_VARIANTS = (IDENTITY, *DIHEDRAL, *(name for name, *_ in CROPS))


@dataclass(frozen=True)
class Variant:
    name: str  # IDENTITY for the picture as it is
    signals: ImageSignals


def variant_descriptor(base_key: str, name: str, variant_set: int = VARIANT_SET) -> str:
    """The descriptor key a reference variant is stored under: the signals' own key, plus the variant set."""
    return base_key if name == IDENTITY else f"{base_key};variants={variant_set}"


# Older variant sets whose variants still mean what ours mean under the same name. Set 1 cut each crop
# from the reduced luma instead of the variant grid: the same region of the picture, hashed by the same
# two hashes at a higher resolution (the two agree within a few bits, as two decodes of one file do), and
# its dihedral turns are computed exactly as ours. So a reference stored under set 1 is compared name for
# name; a name a set does not define, or a set not listed here, is never compared.
COMPARABLE_SETS = {1: frozenset(REFERENCE_VARIANTS[1:])}


def is_comparable(descriptor: str, base_key: str, name: str) -> bool:
    """Whether a stored reference variant (its descriptor and name) compares with signals computed now."""
    if descriptor == variant_descriptor(base_key, name):
        return name in REFERENCE_VARIANTS
    return any(
        name in names and descriptor == variant_descriptor(base_key, name, old)
        for old, names in COMPARABLE_SETS.items()
    )


def _permute(grid: np.ndarray, transform) -> np.ndarray:
    n = grid.shape[0]
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sy, sx = transform(ys, xs, n)
    return grid[sy, sx]


def crop_box(rows: int, cols: int, keep: float, fx: float, fy: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop of the reduced luma, in whole pixels (the browser's rounding too)."""
    height, width = max(1, int(rows * keep + 0.5)), max(1, int(cols * keep + 0.5))
    top, left = int((rows - height) * fy + 0.5), int((cols - width) * fx + 0.5)
    return top, left, height, width


def _grids_at_scale_one(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = luma.shape
    small = resample(luma, lanczos_kernel(rows, 1, rows, False), lanczos_kernel(cols, 1, cols, False))
    buffer64 = resample(luma, jarosz_kernel(rows, 1, rows, False), jarosz_kernel(cols, 1, cols, False))
    return small, buffer64


def signals_of_luma(luma: np.ndarray) -> ImageSignals:
    """The signals of a cut or turned luma image, hashed as a picture of its own (no sha256: no bytes)."""
    small, buffer64 = _grids_at_scale_one(np.ascontiguousarray(luma, dtype=np.float32))
    return signals_from_grids(small, buffer64, sha256=None)


def variant_grid(decoded: Decoded) -> np.ndarray:
    """The picture as GRID_SIDE x GRID_SIDE float luma: Pillow's Lanczos resize of the full-size picture,
    folded over the reduced pixels (``kernels``), as ``static/js/variants.js`` computes it."""
    luma, scale = decoded.luma, decoded.scale
    rows, cols = luma.shape
    return resample(
        luma,
        lanczos_kernel(decoded.height, scale, rows, decoded.short_y, GRID_SIDE),
        lanczos_kernel(decoded.width, scale, cols, decoded.short_x, GRID_SIDE),
    )


def reference_variants(decoded: Decoded) -> list[Variant]:
    """The picture's signals, then one per variant of ``VARIANT_SET``, in ``REFERENCE_VARIANTS`` order."""
    small, buffer64 = grids_of(decoded)
    variants = [
        Variant(
            IDENTITY,
            signals_from_grids(small, buffer64, sha256=decoded.sha256, width=decoded.width, height=decoded.height),
        )
    ]
    for name, transform in DIHEDRAL.items():
        variants.append(
            Variant(name, signals_from_grids(_permute(small, transform), _permute(buffer64, transform), sha256=None))
        )
    grid = variant_grid(decoded)
    for name, keep, fx, fy in CROPS:
        top, left, height, width = crop_box(GRID_SIDE, GRID_SIDE, keep, fx, fy)
        variants.append(Variant(name, signals_of_luma(grid[top : top + height, left : left + width])))
    return variants


_DIHEDRAL_WORDS = {
    "mirrored": "mirrored (left and right swapped)",
    "flipped": "upside down (flipped top to bottom)",
    "turned-half": "turned half-way round",
    "turned-right": "turned a quarter to the right",
    "turned-left": "turned a quarter to the left",
    "transposed": "turned a quarter and mirrored",
    "transversed": "turned a quarter the other way and mirrored",
}


def describe(reference_variant: str, candidate_variant: str) -> str:
    """In words, for the reviewer: which variants of the two pictures matched ("" when the pictures themselves)."""
    parts = []
    if reference_variant in _DIHEDRAL_WORDS:
        parts.append(f"matches your picture {_DIHEDRAL_WORDS[reference_variant]}")
    elif reference_variant.startswith("crop"):
        parts.append(f"matches a crop of your picture (about {reference_variant[4:6]}% of each side)")
    elif reference_variant:
        parts.append(f"matches your picture as variant {reference_variant!r}")
    for step in filter(None, candidate_variant.split("/")):
        if step in ("trimmed", "framed"):
            parts.append("the link's picture with its frame or borders trimmed")
        elif step.startswith("cut-"):
            where = step.split("-")[1]
            parts.append(f"the link's picture without a strip at its {where} (a caption or watermark bar)")
        elif step.startswith("turned-back"):
            parts.append(f"the link's picture turned back by {step[len('turned-back') :]} degrees")
        elif step.startswith("crop"):
            parts.append("a crop of the link's picture (a corner left out, e.g. a logo)")
        else:
            parts.append(f"the link's picture as variant {step!r}")
    if not parts:
        return ""
    text = "; in ".join(parts) if reference_variant else "matches your picture in " + "; in ".join(parts)
    return text[0].upper() + text[1:] + "."


def variants_to_dict(variants: list[Variant]) -> dict:
    """The wire form of a reference's variants: the picture's ``to_dict()`` plus the set and each variant."""
    own, *rest = variants
    body = own.signals.to_dict()
    body["variant_set"] = VARIANT_SET
    body["variants"] = {variant.name: _variant_dict(variant.signals) for variant in rest}
    return body


def _variant_dict(signals: ImageSignals) -> dict:
    data = signals.to_dict()
    del data["sha256"]
    return data


def variants_from_dict(data) -> list[Variant]:
    """A device's signals of one picture, with its variants when it sent them. Raises ``BadHash``.

    Without ``variants`` only the picture's own signals come back (an older page, or an API client that
    hashes the picture alone); with them, the set must be this server's ``VARIANT_SET`` and every
    variant of it must be there, so that signals of another set are never compared as if they were ours.
    """
    if not isinstance(data, dict):
        raise BadHash("signals: expected an object")
    data = dict(data)
    sent, variant_set = data.pop("variants", None), data.pop("variant_set", None)
    own = [Variant(IDENTITY, ImageSignals.from_dict(data))]
    if sent is None and variant_set is None:
        return own
    if variant_set != VARIANT_SET:
        raise BadHash(f"variant_set: this server computes set {VARIANT_SET}; reload the page")
    if not isinstance(sent, dict) or set(sent) != set(REFERENCE_VARIANTS[1:]):
        raise BadHash(f"variants: expected exactly the {len(REFERENCE_VARIANTS) - 1} variants of set {VARIANT_SET}")
    out = own
    for name in REFERENCE_VARIANTS[1:]:
        entry = sent[name]
        if not isinstance(entry, dict) or "sha256" in entry:
            raise BadHash(f"variants.{name}: expected phash, pdq and pdq_quality")
        try:
            parsed = ImageSignals.from_dict({**entry, "sha256": "0" * 64})
        except BadHash as exc:
            raise BadHash(f"variants.{name}: {exc}") from None
        out.append(Variant(name, replace(parsed, sha256=None)))
    return out


# --- The candidate side ---------------------------------------------------------------

# A border row or column is "near-uniform" when this share of its pixels lie within BORDER_TOLERANCE
# grey levels of its own median: a frame, padding, or a bar that carries a little text or a few icons
# (a caption, a screenshot's browser or phone chrome). Judged line by line, so bars of different colours
# one after the other (chrome, then page margin) are trimmed in one pass.
BORDER_SHARE = 0.6
BORDER_TOLERANCE = 12
FRAME_SHARE = 0.8  # a plain frame: this share of a line within BORDER_TOLERANCE of the edge's colour
BORDER_GAP = 0.03  # share of a side: a run of busy lines this long ends the border
MAX_TRIM = 0.35  # never trim more than this share of a side: the rest would not be the picture
STRIP_CUTS = (0.08, 0.14, 0.2)
# The reference crops that leave out one corner region, tried on the candidate too: a logo or a text
# watermark in a corner then falls outside the box, and the same box of both pictures compares.
CORNER_CROPS = tuple(
    crop for crop in CROPS if crop[1] in (0.8, 0.7) and crop[2] in (0.0, 1.0) and crop[3] in (0.0, 1.0)
)  # strips cut from the top or the bottom, as a share of the height
DEROTATIONS = (-4.0, -2.0, 2.0, 4.0)  # degrees turned back, then the largest upright box inside kept


def _uniform_run(lines: np.ndarray, limit: int) -> int:
    """How many of the first lines (each a row of grey levels) belong to a near-uniform border.

    The border ends where BORDER_GAP lines in a row are not uniform: a line of text or a row of icons
    in a bar is a short gap, the picture itself is a long one.
    """
    if limit < 1:
        return 0
    head = lines[:limit]
    medians = np.median(head, axis=1, keepdims=True)
    uniform = (np.abs(head - medians) <= BORDER_TOLERANCE).mean(axis=1) >= BORDER_SHARE
    gap = max(3, int(len(lines) * BORDER_GAP))
    run, busy = 0, 0
    for index, flat in enumerate(uniform):
        if flat:
            run, busy = index + 1, 0
        else:
            busy += 1
            if busy >= gap:
                break
    return run


def _edge_run(lines: np.ndarray, limit: int) -> int:
    """How many of the first lines are near-uniform in the first line's own colour (a plain frame)."""
    if limit < 1:
        return 0
    edge = np.median(lines[0])
    uniform = (np.abs(lines[:limit] - edge) <= BORDER_TOLERANCE).mean(axis=1) >= FRAME_SHARE
    if not uniform[0]:
        return 0
    return int(limit if uniform.all() else np.argmin(uniform))


def trim_box(luma: np.ndarray, *, loose: bool = True) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) without near-uniform borders on each side, or None when there are none.

    ``loose`` also trims bars that carry text or icons (``_uniform_run``); strict trims only a plain frame
    of one colour (``_edge_run``), which leaves a picture with a dark or flat background of its own alone.
    """
    run = _uniform_run if loose else _edge_run
    rows, cols = luma.shape
    top = run(luma, int(rows * MAX_TRIM))
    bottom = run(luma[::-1], int(rows * MAX_TRIM))
    left = run(luma.T, int(cols * MAX_TRIM))
    right = run(luma.T[::-1], int(cols * MAX_TRIM))
    if top + bottom + left + right == 0:
        return None
    return top, left, rows - top - bottom, cols - left - right


def _derotated(luma: np.ndarray, degrees: float) -> np.ndarray:
    """Turn by ``degrees`` (counter-clockwise) and keep the largest upright box that holds no new corner."""
    rows, cols = luma.shape
    turned = np.asarray(Image.fromarray(luma, "F").rotate(degrees, Image.Resampling.BILINEAR), dtype=np.float32)
    angle = np.radians(abs(degrees))
    sin, cos = np.sin(angle), np.cos(angle)
    # The largest centred box of the picture's aspect inside the turned picture.
    factor = 1.0 / (cos + sin * max(rows / cols, cols / rows))
    height, width = int(rows * factor), int(cols * factor)
    top, left = (rows - height) // 2, (cols - width) // 2
    return turned[top : top + height, left : left + width]


def candidate_variants(decoded: Decoded) -> list[Variant]:
    """A fetched picture's own signals, then its signals with frames trimmed, strips cut and small turns undone."""
    luma = decoded.luma
    variants = [
        Variant(
            IDENTITY,
            signals_from_grids(*grids_of(decoded), sha256=decoded.sha256, width=decoded.width, height=decoded.height),
        )
    ]
    bases = [("", luma)]
    boxes = {"framed": trim_box(luma, loose=False), "trimmed": trim_box(luma)}
    if boxes["framed"] == boxes["trimmed"]:
        del boxes["framed"]
    for name, box in boxes.items():
        if box is None:
            continue
        top, left, height, width = box
        if height >= 16 and width >= 16:
            trimmed = luma[top : top + height, left : left + width]
            variants.append(Variant(name, signals_of_luma(trimmed)))
            if name == "trimmed":
                bases.append(("trimmed/", trimmed))
    rows, cols = luma.shape
    for name, keep, fx, fy in CORNER_CROPS:
        top, left, height, width = crop_box(rows, cols, keep, fx, fy)
        variants.append(Variant(name, signals_of_luma(luma[top : top + height, left : left + width])))
    for share in STRIP_CUTS:
        cut = int(rows * share + 0.5)
        variants.append(Variant(f"cut-bottom-{round(share * 100)}", signals_of_luma(luma[: rows - cut])))
        variants.append(Variant(f"cut-top-{round(share * 100)}", signals_of_luma(luma[cut:])))
    for prefix, base in bases:
        for degrees in DEROTATIONS:
            variants.append(Variant(f"{prefix}turned-back{degrees:+g}", signals_of_luma(_derotated(base, degrees))))
    return variants
