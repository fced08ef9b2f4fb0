"""Variants: the signals of a picture turned, mirrored and cropped, so that edited copies still match.

Reference side (``reference_variants``): a fixed, versioned set (``VARIANT_SET``) computed from one
decoded reference picture, on the server and in ``static/js/signals.js`` alike:

- the 8 dihedral transforms: the picture itself, mirrored, flipped, turned a quarter either way or
  half-way round, and the two diagonal reflections. Each permutes the 32x32 pHash image and the 64x64
  PDQ buffer of the picture (as PDQ's ``dihedral`` does on its DCT), so they cost two DCTs each;
- pads (``PADS``): the grid inside a plain white or black border, or with a bar along its top or
  bottom, so that a framed or captioned copy in the index is found by its one signal set;
- a grid of crops (``CROPS``): each cuts a share of the *variant grid* and hashes it afresh, both hashes'
  geometry applied to the cut pixels (scale 1). A copy cropped by a reposting site lies inside the
  reference, so one of these lands close to it;
- badges (``BADGES``): the grid with a plain patch near one corner, square in the picture, so that a
  copy in the index with an opaque logo pasted there is found by its one signal set.

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

The candidate side (a fetched picture, expanded on the server only) is ``candidates``.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from optout.imaging.hashbits import BadHash
from optout.imaging.hashes import Decoded, ImageSignals, grids_of, signals_from_grids
from optout.imaging.kernels import jarosz_kernel, lanczos_kernel, resample

# Bump when a change here changes which variants exist or how one is computed; it is part of every
# stored reference variant's descriptor (``variant_descriptor``).
VARIANT_SET = 5
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
    90: (0.0, 0.25, 0.5, 0.75, 1.0),
    85: (0.0, 0.25, 0.5, 0.75, 1.0),
    80: (0.0, 0.25, 0.5, 0.75, 1.0),
    70: (0.0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 1.0),  # a 30% cut: places 5% of a side apart, as at 80%
}
CROPS = tuple(
    (f"crop{size}-{round(fx * 100)}-{round(fy * 100)}", size / 100, fx, fy)
    for size, places in CROP_PLACES.items()
    for fy in places
    for fx in places
)
# Pads: the picture inside a border, or with a bar along one edge, in plain white or black (name, share of
# the picture's height added on top and at the bottom, of its width on the left and on the right, grey).
# A dataset row keeps its own signals only, so a framed or captioned copy in the index is found through
# these. The shares are those of the variant grid's sides; the bar's text is left out, as its pixels are
# few. bench/match_quality.py measures what each buys (discovery of the border and caption classes).
PADS = tuple(
    (f"bordered{round(share * 100)}-{colour}", share, share, share, share, grey)
    for share in (0.06, 0.12, 0.18)
    for colour, grey in (("white", 255.0), ("black", 0.0))
) + tuple(
    (
        f"bar-{where}{round(share * 100)}-{colour}",
        share if where == "top" else 0.0,
        share if where == "bottom" else 0.0,
        0.0,
        0.0,
        grey,
    )
    for where in ("top", "bottom")
    for share in (0.1, 0.2)
    for colour, grey in (("white", 255.0), ("black", 0.0))
)
# A picture shown on a page, as a screenshot of it has it: white margins, wider above and below.
PADS += (
    ("page-narrow", 0.12, 0.08, 0.06, 0.06, 255.0),
    ("page-wide", 0.16, 0.1, 0.08, 0.08, 255.0),
    ("page-tall", 0.2, 0.3, 0.05, 0.05, 255.0),
)
# Small turns: the picture turned by a few degrees either way, on a canvas of its own size with black
# corners, or on the larger canvas that holds all of it with white corners (as image editors do), so
# that a turned copy in the index is found. (name, cosine, sine, expanded, grey of the corners). The
# cosines and sines are written out: the browser's Math.sin need not round as libm's does.
_TURN_ANGLES = ((-4, 0.9975640502598242, -0.0697564737441253), (-2, 0.9993908270190958, -0.03489949670250097))
_TURN_ANGLES += tuple((-degrees, cos, -sin) for degrees, cos, sin in reversed(_TURN_ANGLES))
TURNS = tuple(
    (f"turned{degrees:+d}-{'expanded' if expanded else 'corners'}", cos, sin, expanded, 255.0 if expanded else 0.0)
    for expanded in (False, True)
    for degrees, cos, sin in _TURN_ANGLES
)
# Badges: the picture with a plain patch over one corner, as an opaque logo or a stock site's badge covers
# it. A dataset row keeps its own signals only, and a logo over up to a tenth of the picture reaches a
# third of each side in, past what any reference crop leaves out. pHash and PDQ keep only low frequencies,
# of which a patch of the logo's brightness keeps most; the brightness is unknown, so a ladder of four
# greys is tried. A logo is square in the picture, not in the grid that squashes the picture to a square:
# on a 3:2 picture a square logo is a tall patch of the grid. So each badge is a square of the picture,
# its side a share of the side of the square of the picture's area (0.15 to 0.35: a logo over 2% to 12%
# of the picture), 5% apart as the crop sizes are, a little in from the corner as logos are placed.
# (name, side as that share, margin as a share of each side, bottom?, right?, grey)
BADGE_SIDES = (0.15, 0.2, 0.25, 0.3, 0.35)
BADGE_MARGIN = 0.02
BADGE_GREYS = (0, 85, 170, 255)
BADGE_MAX_SHARE = 0.5  # a badge never covers more than half of a side (a square logo on a long panorama)


def _badge_name(side: float, bottom: bool, right: bool, grey: int, margin: float | None = None) -> str:
    """badge-top-right25-m2-170 (set 5: with its margin), badge-top-right30-170 (set 4: flush with the corner)."""
    inset = "" if margin is None else f"-m{round(margin * 100)}"
    return f"badge-{'bottom' if bottom else 'top'}-{'right' if right else 'left'}{round(side * 100)}{inset}-{grey}"


BADGES = tuple(
    (
        _badge_name(side, bottom, right, grey, BADGE_MARGIN),
        side,
        BADGE_MARGIN,
        bottom,
        right,
        float(grey),
    )
    for side in BADGE_SIDES
    for bottom in (False, True)
    for right in (False, True)
    for grey in BADGE_GREYS
)
REFERENCE_VARIANTS = (
    IDENTITY,
    *DIHEDRAL,
    *(name for name, *_ in CROPS),
    *(name for name, *_ in PADS),
    *(name for name, *_ in TURNS),
    *(name for name, *_ in BADGES),
)


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
# Set 2 is set 1 cut from the variant grid; set 3 added the pads, the turns and crop places; set 4 the
# badges, every variant of set 3 computed as before. Set 5 replaced set 4's badges (squares of the grid,
# flush with the corner, three sizes) by squares of the picture a little in from the corner, five sizes,
# under other names: a set-4 badge still means what it meant, the name tells its geometry.
_SET_1_CROP_PLACES = {  # the crop places of sets 1 and 2 (set 3 added more), frozen here for their names
    95: (0.5,),
    90: (0.0, 0.5, 1.0),
    85: (0.0, 0.5, 1.0),
    80: (0.0, 0.25, 0.5, 0.75, 1.0),
    70: (0.0, 0.25, 0.5, 0.75, 1.0),
}
SET_1_CROPS = tuple(
    (f"crop{size}-{round(fx * 100)}-{round(fy * 100)}", size / 100, fx, fy)
    for size, places in _SET_1_CROP_PLACES.items()
    for fy in places
    for fx in places
)
_SET_1_NAMES = frozenset((*DIHEDRAL, *(name for name, *_ in SET_1_CROPS)))
_SET_3_NAMES = frozenset((*DIHEDRAL, *(name for table in (CROPS, PADS, TURNS) for name, *_ in table)))
SET_4_BADGES = tuple(  # set 4's badges: (name, share of each side of the grid covered from the corner, ...)
    (_badge_name(side, bottom, right, grey), side)
    for side in (0.2, 0.3, 0.4)
    for bottom in (False, True)
    for right in (False, True)
    for grey in (0, 85, 170, 255)
)
_SET_4_NAMES = _SET_3_NAMES | frozenset(name for name, _ in SET_4_BADGES)
COMPARABLE_SETS = {1: _SET_1_NAMES, 2: _SET_1_NAMES, 3: _SET_3_NAMES, 4: _SET_4_NAMES}


def is_guessed_patch(name: str) -> bool:
    """Whether a reference variant paints a guessed patch over the picture (a badge of set 4 or 5)."""
    return name.startswith("badge-")


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
    for name, *shares, grey in PADS:
        variants.append(Variant(name, signals_of_luma(padded(grid, *shares, grey))))
    for name, cos, sin, expanded, grey in TURNS:
        variants.append(
            Variant(name, signals_of_luma(turned(grid, decoded.width, decoded.height, cos, sin, expanded, grey)))
        )
    for name, side, margin, bottom, right, grey in BADGES:
        box = badge_box(decoded.width, decoded.height, side, margin, bottom, right)
        variants.append(Variant(name, signals_of_luma(badged(grid, box, grey))))
    return variants


def badge_box(width: int, height: int, side: float, margin: float, bottom: bool, right: bool) -> tuple:
    """(top, left, height, width) in the variant grid of a square of a width x height picture, its side
    ``side`` of the side of the square of the picture's area, ``margin`` of each side in from a corner."""
    across = min(BADGE_MAX_SHARE, side * math.sqrt(height / width))  # its share of the picture's width
    down = min(BADGE_MAX_SHARE, side * math.sqrt(width / height))
    box_width, box_height = int(GRID_SIDE * across + 0.5), int(GRID_SIDE * down + 0.5)
    inset = int(GRID_SIDE * margin + 0.5)
    top = GRID_SIDE - inset - box_height if bottom else inset
    left = GRID_SIDE - inset - box_width if right else inset
    return top, left, box_height, box_width


def badged(grid: np.ndarray, box: tuple[int, int, int, int], grey: float) -> np.ndarray:
    """The grid (as float32, as the browser holds it) with a box (top, left, height, width) painted ``grey``."""
    out = np.array(grid, dtype=np.float32)
    top, left, height, width = box
    out[top : top + height, left : left + width] = grey
    return out


def turned(
    grid: np.ndarray, width: int, height: int, cos: float, sin: float, expanded: bool, grey: float
) -> np.ndarray:
    """The grid of a width x height picture turned counter-clockwise (sine > 0) as the picture itself turns.

    The grid squashes the picture to a square, so each output pixel is taken back to the picture's own
    proportions, turned there, and sampled bilinearly from the grid; what falls outside is ``grey``.
    Every step is a float64 operation in the same order as ``static/js/variants.js``.
    """
    side = grid.shape[0]
    half = side / 2
    out_width, out_height = float(width), float(height)
    if expanded:
        out_width, out_height = width * cos + height * abs(sin), width * abs(sin) + height * cos
    centres = np.arange(side, dtype=np.float64) + 0.5 - half
    x = centres[None, :] * (out_width / side)
    y = centres[:, None] * (out_height / side)
    xs = (cos * x - sin * y) * (side / width) + (half - 0.5)
    ys = (sin * x + cos * y) * (side / height) + (half - 0.5)
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    inside = (x0 >= 0) & (y0 >= 0) & (x0 < side - 1) & (y0 < side - 1)
    left = np.where(inside, x0, 0).astype(np.intp)
    top = np.where(inside, y0, 0).astype(np.intp)
    source = grid.astype(np.float64)
    upper = source[top, left] * (1 - fx) + source[top, left + 1] * fx
    lower = source[top + 1, left] * (1 - fx) + source[top + 1, left + 1] * fx
    return np.where(inside, upper * (1 - fy) + lower * fy, grey).astype(np.float32)


def padded(grid: np.ndarray, top: float, bottom: float, left: float, right: float, grey: float) -> np.ndarray:
    """The grid on a plain canvas of one grey, each side's margin a share of the grid's side (rounded as JS)."""
    side = grid.shape[0]
    above, below = int(side * top + 0.5), int(side * bottom + 0.5)
    before, after = int(side * left + 0.5), int(side * right + 0.5)
    canvas = np.full((above + side + below, before + side + after), grey, dtype=np.float32)
    canvas[above : above + side, before : before + side] = grid
    return canvas


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
    elif reference_variant.startswith("turned") and reference_variant[6] in "+-":
        parts.append(f"matches your picture turned by {reference_variant[6:].rsplit('-', 1)[0]} degrees")
    elif reference_variant.startswith("page-"):
        parts.append("matches your picture shown on a page (as in a screenshot)")
    elif reference_variant.startswith("bordered"):
        parts.append("matches your picture inside a border or frame")
    elif reference_variant.startswith("badge-"):  # badge-top-right25-m2-170 (set 5), badge-top-right30-170 (set 4)
        corner = reference_variant[len("badge-") :].split("-")
        corner = f"{corner[0]}-{corner[1].rstrip('0123456789')}"
        parts.append(f"matches your picture with a patch over its {corner} corner (where a logo sits)")
    elif reference_variant.startswith("bar-"):
        where = "top" if reference_variant.startswith("bar-top") else "bottom"
        parts.append(f"matches your picture with a bar added at its {where} (a caption)")
    elif reference_variant:
        parts.append(f"matches your picture as variant {reference_variant!r}")
    for step in filter(None, candidate_variant.split("/")):
        if step == "layered":
            parts.append("the link's picture with the bars and margins around it cut away (as in a screenshot)")
        elif step in ("trimmed", "framed"):
            parts.append("the link's picture with its frame or borders trimmed")
        elif step.startswith("cut-"):
            where = step.split("-")[1]
            parts.append(f"the link's picture without a strip at its {where} (a caption or watermark bar)")
        elif step.startswith("turned-back"):
            parts.append(f"the link's picture turned back by {step[len('turned-back') :]} degrees")
        elif step.startswith("crop"):
            parts.append("a crop of the link's picture (a corner left out, e.g. a logo)")
        elif step.startswith("painted-"):
            corner = step[len("painted-") :].rstrip("0123456789")
            parts.append(f"the link's picture with its {corner} corner painted over (where a logo sits)")
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
