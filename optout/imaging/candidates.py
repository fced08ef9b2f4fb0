"""Candidate variants: a fetched picture, whose bytes the server holds while it verifies, tried as its edits
would be undone (server only; dataset rows keep one signal set each).

``candidate_variants`` gives the picture's own signals, then its signals with near-uniform borders
trimmed (frames, padding, screenshot chrome, caption bars), with each screenshot-like layer of bars and
margins cut at its colour boundaries, with corners left out (logos), with strips cut from the top or
bottom (captions and watermark bars on busy pictures), with a corner painted over in the grey around it
(a logo too large for any reference crop to leave out), and turned back by small angles. Every one of
them is compared with every reference variant (``compare.best_match``).
"""

import itertools

import numpy as np
from PIL import Image

from optout.imaging.hashes import Decoded, grids_of, signals_from_grids
from optout.imaging.variants import CROPS, IDENTITY, Variant, crop_box, signals_of_luma

# A border row or column is "near-uniform" when this share of its pixels lie within BORDER_TOLERANCE
# grey levels of its own median: a frame, padding, or a bar that carries a little text or a few icons
# (a caption, a screenshot's browser or phone chrome). Judged line by line, so bars of different colours
# one after the other (chrome, then page margin) are trimmed in one pass.
BORDER_SHARE = 0.6
BORDER_TOLERANCE = 12
FRAME_SHARE = 0.8  # a plain frame: this share of a line within BORDER_TOLERANCE of the edge's colour
BORDER_GAP = 0.03  # share of a side: a run of busy lines this long ends the border
MAX_TRIM = 0.35  # never trim more than this share of a side: the rest would not be the picture
STRIP_CUTS = (0.08, 0.14, 0.2)  # strips cut from the top or the bottom, as a share of the height
# The reference crops that leave out one corner region, tried on the candidate too: a logo or a text
# watermark in a corner then falls outside the box, and the same box of both pictures compares.
CORNER_CROPS = tuple(
    crop for crop in CROPS if crop[1] in (0.8, 0.7) and crop[2] in (0.0, 1.0) and crop[3] in (0.0, 1.0)
)
DEROTATIONS = (-4.0, -2.0, 2.0, 4.0)  # degrees turned back, then the largest upright box inside kept
# Corner patches painted over: a logo pasted in a corner (an opaque badge, a stock site's mark) covering up
# to about 10% of the picture, a third of each side, is replaced by the mean grey of the picture around it.
# pHash and PDQ keep only low frequencies, and under a patch the picture's low frequencies are close to
# its surroundings' mean (most of all on a texture, where crops that leave out the corner do not help:
# the smallest reference crop, 70% of a side, still overlaps a logo that reaches 35% in from the edges).
# (share of each side covered, from the corner inwards)
PATCH_SIDES = (0.2, 0.3, 0.4)
PATCH_RING = 0.05  # the band around a patch whose mean grey fills it, as a share of each side


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


def _colour_boundaries(lines: np.ndarray, limit: int, keep: int) -> list[int]:
    """Within the first ``limit`` lines, the ``keep`` places where the line's median grey jumps most.

    A screenshot stacks bars and margins of different colours around the picture (chrome, page margin);
    where the picture itself starts with a flat region of its own (a night sky, a studio backdrop) the
    loose trim runs on into it, but the picture's edge is still the largest jump of colour on the way.
    """
    if limit < 2:
        return []
    medians = np.median(lines[:limit], axis=1)
    jumps = np.abs(np.diff(medians))
    places = np.argsort(jumps, kind="stable")[::-1][:keep] + 1
    return sorted(int(place) for place in places if jumps[place - 1] > 2 * BORDER_TOLERANCE)


def layered_boxes(luma: np.ndarray, known: set) -> list[tuple[int, int, int, int]]:
    """Boxes that cut a screenshot-like layer of bars and margins at its colour boundaries.

    Each side is cut at its loose border's end or at one of its largest colour jumps within it (the top
    two, where browser chrome and status bars pile up; the other sides one); every combination is a box.
    The boxes in ``known`` (the loose and strict trims the caller has made already) are not repeated.
    """
    rows, cols = luma.shape
    sides = []
    for lines, limit, keep in (
        (luma, int(rows * MAX_TRIM), 2),
        (luma[::-1], int(rows * MAX_TRIM), 1),
        (luma.T, int(cols * MAX_TRIM), 1),
        (luma.T[::-1], int(cols * MAX_TRIM), 1),
    ):
        run = _uniform_run(lines, limit)
        sides.append(sorted({run, *_colour_boundaries(lines, run, keep)}))  # the boundaries lie inside the run
    boxes = [
        (top, left, rows - top - bottom, cols - left - right)
        for top, bottom, left, right in itertools.product(*sides)
        if top + bottom + left + right
    ]
    return [box for box in boxes if box not in known and box[2] >= 16 and box[3] >= 16]


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


def _painted_corner(luma: np.ndarray, side: float, corner: tuple[int, int]) -> np.ndarray:
    """The luma with a box of ``side`` of each side at a ``corner`` (bottom?, right?) painted over in the
    mean grey of the band of PATCH_RING around the box's inner edges."""
    rows, cols = luma.shape
    top, left, height, width = crop_box(rows, cols, side, corner[1], corner[0])
    band_rows, band_cols = max(1, int(rows * PATCH_RING + 0.5)), max(1, int(cols * PATCH_RING + 0.5))
    outer_top, outer_left = max(0, top - band_rows), max(0, left - band_cols)
    outer = luma[outer_top : top + height + band_rows, outer_left : left + width + band_cols]
    inner = luma[top : top + height, left : left + width]
    painted = luma.copy()
    painted[top : top + height, left : left + width] = (outer.sum() - inner.sum()) / (outer.size - inner.size)
    return painted


def candidate_variants(decoded: Decoded) -> list[Variant]:
    """A fetched picture's own signals, then its signals with frames trimmed, corners left out or painted over,
    strips cut and small turns undone."""
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
    for top, left, height, width in layered_boxes(luma, set(boxes.values())):
        variants.append(Variant("layered", signals_of_luma(luma[top : top + height, left : left + width])))
    rows, cols = luma.shape
    for name, keep, fx, fy in CORNER_CROPS:
        top, left, height, width = crop_box(rows, cols, keep, fx, fy)
        variants.append(Variant(name, signals_of_luma(luma[top : top + height, left : left + width])))
    for side in PATCH_SIDES:
        for corner in itertools.product((0, 1), (0, 1)):
            name = f"painted-{'bottom' if corner[0] else 'top'}-{'right' if corner[1] else 'left'}{round(side * 100)}"
            variants.append(Variant(name, signals_of_luma(_painted_corner(luma, side, corner))))
    for share in STRIP_CUTS:
        cut = int(rows * share + 0.5)
        variants.append(Variant(f"cut-bottom-{round(share * 100)}", signals_of_luma(luma[: rows - cut])))
        variants.append(Variant(f"cut-top-{round(share * 100)}", signals_of_luma(luma[cut:])))
    for prefix, base in bases:
        for degrees in DEROTATIONS:
            variants.append(Variant(f"{prefix}turned-back{degrees:+g}", signals_of_luma(_derotated(base, degrees))))
    return variants
