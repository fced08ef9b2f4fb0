"""Variants: an edited copy of a real photo still matches, in every edit class; a different photo does not."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from optout import imaging
from optout.imaging import candidates, variants
from optout.imaging.hashbits import BadHash, hamming
from tests import images

LIMITS = {"max_bytes": 1 << 26, "max_pixels": 1 << 26}
THRESHOLDS = {"phash_threshold": 8, "pdq_threshold": 31, "pdq_review": 50}


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _decoded(image: Image.Image, quality: int = 85) -> imaging.Decoded:
    return imaging.decode_image(_jpeg(image, quality), **LIMITS)


def _reference(name: str = "astronaut") -> list[imaging.Variant]:
    return imaging.reference_variants(_decoded(images.photo(name), 92))


def _verdict(reference: list[imaging.Variant], copy: Image.Image) -> imaging.Comparison:
    return imaging.best_match([reference], imaging.candidate_variants(_decoded(copy)), **THRESHOLDS)


def _found(reference: list[imaging.Variant], copy: Image.Image) -> imaging.Comparison:
    """As discovery compares a dataset row: the copy's own signals only."""
    row = imaging.Variant(imaging.IDENTITY, imaging.signals_of(_decoded(copy)))
    return imaging.best_match([reference], [row], **THRESHOLDS)


def _caption(image: Image.Image, share: float) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + int(image.height * share)), "white")
    out.paste(image, (0, 0))
    ImageDraw.Draw(out).text((10, image.height + 10), "me at the lake, summer 2019 #holiday", fill="black")
    return out


def _screenshot(image: Image.Image) -> Image.Image:
    w, h = image.size
    out = Image.new("RGB", (w + w // 6, h + h // 4), "white")
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, out.width, h // 8), fill=(222, 225, 230))
    draw.rectangle((out.width // 8, h // 32, out.width * 7 // 8, h * 3 // 32), fill="white")
    draw.text((out.width // 8 + 6, h // 20), "https://example.com/photos/1234", fill=(60, 60, 60))
    out.paste(image, (w // 12, h // 8 + h // 20))
    return out


def _logo(image: Image.Image) -> Image.Image:
    out = image.copy()
    side = int((image.width * image.height * 0.08) ** 0.5)
    logo = images.photo("coffee", (side, side))
    out.paste(logo, (image.width - side - 10, 10))
    return out


EDITS = {
    "resized to a thumbnail": lambda im: ImageOps.contain(im, (160, 160)),
    "recompressed": lambda im: im,  # _decoded(..., quality) below gives it quality 30
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "less contrast": lambda im: ImageEnhance.Contrast(im).enhance(0.6),
    "greyscale": lambda im: im.convert("L").convert("RGB"),
    "blurred": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "mirrored": ImageOps.mirror,
    "turned a quarter": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotated 3 degrees": lambda im: im.rotate(3, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)),
    "cropped to 80% off-centre": lambda im: im.crop(
        (int(im.width * 0.04), int(im.height * 0.18), int(im.width * 0.84), int(im.height * 0.98))
    ),
    "cropped to 70%": lambda im: im.crop(
        (im.width * 15 // 100, im.height * 15 // 100, im.width * 85 // 100, im.height * 85 // 100)
    ),
    "framed by a 15% border": lambda im: ImageOps.expand(im, border=im.width * 15 // 100, fill=(40, 90, 160)),
    "in a screenshot": _screenshot,
    "with a caption bar": lambda im: _caption(im, 0.15),
    "with a logo in a corner": _logo,
}


def _edit(name: str, image: Image.Image) -> Image.Image:
    return EDITS[name](image)


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_copy_of_a_real_photo_is_verified(edit):
    reference = _reference("astronaut")
    copy = _edit(edit, images.photo("astronaut"))
    if edit == "recompressed":
        candidates = imaging.candidate_variants(imaging.decode_image(_jpeg(copy, 30), **LIMITS))
        comparison = imaging.best_match([reference], candidates, **THRESHOLDS)
    else:
        comparison = _verdict(reference, copy)
    assert comparison.strength in ("weak", "strong"), (edit, comparison)


@pytest.mark.parametrize(
    ("edit", "variant"),
    [
        ("framed in white", "bordered"),
        ("with a caption bar", "bar-bottom"),
        ("rotated 3 degrees", "turned+"),
        ("rotated -2 degrees, expanded", "turned-2-expanded"),
    ],
)
def test_discovery_finds_framed_captioned_and_turned_copies_by_pads_and_turns(edit, variant):
    photo = images.photo("chelsea")
    copy = {
        "framed in white": lambda im: ImageOps.expand(im, border=im.width * 12 // 100, fill="white"),
        "with a caption bar": lambda im: _caption(im, 0.15),
        "rotated 3 degrees": EDITS["rotated 3 degrees"],
        "rotated -2 degrees, expanded": lambda im: im.rotate(
            -2, Image.Resampling.BICUBIC, expand=True, fillcolor="white"
        ),
    }[edit](photo)
    reference = _reference("chelsea")
    assert (
        imaging.compare(
            reference[0].signals, imaging.signals_of(_decoded(copy)), phash_threshold=8, pdq_threshold=31
        ).strength
        is None
    )
    comparison = _found(reference, copy)
    assert comparison.strength in ("weak", "strong"), (edit, comparison)
    assert comparison.reference_variant.startswith(variant), comparison.reference_variant
    assert imaging.describe(comparison.reference_variant, "").startswith("Matches your picture")


@pytest.mark.parametrize(("name", "corner"), [("grass", (0, 1)), ("brick", (0, 1)), ("grass", (1, 0))])
def test_a_logo_over_a_tenth_of_a_texture_is_verified_with_its_corner_painted_over(name, corner):
    # The badges (reference side) find such copies too, in the index: the painted corners are tried
    # against a reference without them, as a reference of set 3 is.
    reference = [variant for variant in _reference(name) if not variant.name.startswith("badge-")]
    fetched = imaging.candidate_variants(_decoded(images.with_logo(images.photo(name), corner)))
    comparison = imaging.best_match([reference], fetched, **THRESHOLDS)
    assert comparison.strength in ("weak", "strong"), comparison
    where = f"{'bottom' if corner[0] else 'top'}-{'right' if corner[1] else 'left'}"
    assert comparison.candidate_variant.startswith(f"painted-{where}"), comparison.candidate_variant
    # Every reference crop overlaps the logo: without the painted corners the copy is no match.
    unpainted = [variant for variant in fetched if not variant.name.startswith("painted-")]
    assert imaging.best_match([reference], unpainted, **THRESHOLDS).strength is None


def test_a_painted_corner_is_told_to_the_reviewer():
    assert imaging.describe("", "painted-top-right40") == (
        "Matches your picture in the link's picture with its top-right corner painted over (where a logo sits)."
    )


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_discovery_finds_a_copy_with_a_logo_over_a_tenth_of_it(name):
    """Discovery holds a row's own signals only; a logo on a picture with large structures of its own moves
    them little."""
    comparison = _found(_reference(name), images.with_logo(images.photo(name), (0, 1)))
    assert comparison.strength in ("weak", "strong"), comparison


@pytest.mark.parametrize(("name", "corner"), [("grass", (0, 1)), ("gravel", (1, 0)), ("cell", (0, 1))])
def test_discovery_finds_a_copy_with_a_logo_over_a_tenth_of_a_texture_by_a_badge(name, corner):
    """On a texture the logo moves the row's signals past the thresholds of the picture and its crops;
    the reference with a plain patch over that corner is near enough."""
    reference = _reference(name)
    copy = images.with_logo(images.photo(name), corner)
    comparison = _found(reference, copy)
    assert comparison.strength in ("weak", "strong"), comparison
    where = f"{'bottom' if corner[0] else 'top'}-{'right' if corner[1] else 'left'}"
    assert comparison.reference_variant.startswith(f"badge-{where}"), comparison.reference_variant
    assert imaging.describe(comparison.reference_variant, "") == (
        f"Matches your picture with a patch over its {where} corner (where a logo sits)."
    )
    unbadged = [variant for variant in reference if not variant.name.startswith("badge-")]
    assert _found(unbadged, copy).strength is None


def _disc_logo(image: Image.Image, share: float, corner: tuple[int, int], margin: float) -> Image.Image:
    """A logo unlike the bench's: a dark disc with white letters over ``share`` of the picture (its box), near
    a corner (bottom?, right?), ``margin`` of each side in."""
    side = int((image.width * image.height * share) ** 0.5)
    left = image.width - side - int(image.width * margin) if corner[1] else int(image.width * margin)
    top = image.height - side - int(image.height * margin) if corner[0] else int(image.height * margin)
    out = image.copy()
    draw = ImageDraw.Draw(out)
    draw.ellipse((left, top, left + side, top + side), fill=(20, 20, 30))
    draw.text((left + side // 4, top + side // 3), "NEWS 24", fill="white", font_size=max(8, side // 5))
    return out


def _near(reference: list[imaging.Variant], copy: Image.Image) -> list[str]:
    """The reference variants that the matcher finds the copy's row by (within a threshold of one family)."""
    row = imaging.signals_of(_decoded(copy))
    return [
        variant.name
        for variant in reference
        if hamming(variant.signals.phash, row.phash) <= THRESHOLDS["phash_threshold"]
        or (
            None not in (variant.signals.pdq, row.pdq)
            and hamming(variant.signals.pdq, row.pdq) <= THRESHOLDS["pdq_threshold"]
        )
    ]


# Set 4's badges were squares of the grid flush with the corner: on a 3:2 photo (rocket, chelsea) a square
# logo is a tall patch of the grid, and neither the bench's logo nor a dark disc was found in the index.
@pytest.mark.parametrize(
    ("name", "logo", "corner"),
    [
        ("rocket", lambda im: images.with_logo(im, (0, 1), 0.05), "top-right"),
        ("chelsea", lambda im: _disc_logo(im, 0.03, (1, 0), 0.05), "bottom-left"),
        ("hubble_deep_field", lambda im: _disc_logo(im, 0.07, (1, 1), 0.04), "bottom-right"),
    ],
)
def test_discovery_finds_a_logo_that_is_square_in_a_photo_of_other_proportions(name, logo, corner):
    reference = _reference(name)
    copy = logo(images.photo(name))
    near = _near(reference, copy)
    assert near and all(found.startswith(f"badge-{corner}") for found in near), near
    assert _found(reference, copy).strength in ("weak", "strong")


def test_a_badge_is_a_square_of_the_picture_painted_one_grey_near_a_corner():
    decoded = _decoded(images.photo("rocket"))  # 640 x 427: a square logo is a tall patch of the square grid
    grid = variants.variant_grid(decoded)
    top, left, height, width = variants.badge_box(decoded.width, decoded.height, 0.3, 0.02, True, False)
    inset = int(variants.GRID_SIDE * 0.02 + 0.5)
    assert (left, top + height) == (inset, variants.GRID_SIDE - inset)
    # Square in the picture (as many of the picture's pixels across as down), over the share of the
    # picture that its side says.
    assert abs(width * decoded.width - height * decoded.height) <= decoded.width
    assert abs(height * width / variants.GRID_SIDE**2 - 0.3**2) < 0.005
    out = variants.badged(grid, (top, left, height, width), 85.0)
    assert (out[top : top + height, left : left + width] == 85.0).all()
    untouched = np.ones(grid.shape, bool)
    untouched[top : top + height, left : left + width] = False
    assert (out[untouched] == grid.astype("float32")[untouched]).all()


def test_a_badge_never_covers_more_than_half_a_side_of_a_panorama():
    assert variants.badge_box(4000, 1000, 0.35, 0.02, False, False)[2] == int(variants.GRID_SIDE * 0.5 + 0.5)


@pytest.mark.parametrize(
    ("variant", "words"),
    [("turned+2-corners", "turned by +2 degrees"), ("turned-4-expanded", "turned by -4 degrees")],
)
def test_a_turn_is_told_with_its_angle_and_sign(variant, words):
    assert imaging.describe(variant, "") == f"Matches your picture {words}."


@pytest.mark.parametrize("edit", ["mirrored", "turned a quarter", "cropped to 80% off-centre", "greyscale"])
def test_discovery_finds_copies_inside_the_reference_by_its_variants(edit):
    reference = _reference("coffee")
    comparison = _found(reference, _edit(edit, images.photo("coffee")))
    assert comparison.strength in ("weak", "strong"), (edit, comparison)
    if edit == "mirrored":
        assert comparison.reference_variant == "mirrored"
        assert imaging.describe(comparison.reference_variant, comparison.candidate_variant).startswith(
            "Matches your picture mirrored"
        )


def test_today_a_mirrored_copy_was_no_match():
    reference = _reference("coffee")
    row = imaging.signals_of(_decoded(ImageOps.mirror(images.photo("coffee"))))
    assert imaging.compare(reference[0].signals, row, phash_threshold=8, pdq_threshold=31).strength is None


@pytest.mark.parametrize("other", ["coffee", "chelsea", "motorcycle_left"])
def test_a_different_photo_is_never_strong_and_the_stereo_pair_is_at_most_weak(other):
    reference = _reference("astronaut" if other != "motorcycle_left" else "motorcycle_right")
    comparison = _verdict(reference, images.photo(other))
    assert comparison.strength != "strong"
    if other != "motorcycle_left":
        assert comparison.strength is None


def test_the_dihedral_variants_are_the_plain_signals_of_the_turned_picture():
    # A square picture reduced by nothing: turning it turns both hash grids exactly, up to PDQ's
    # sampling points, which are not symmetric; the variant must match the turned copy closely.
    photo = images.photo("chelsea", (512, 512))
    reference = {v.name: v.signals for v in _reference_of(photo)}
    for name, transpose in {
        "mirrored": Image.Transpose.FLIP_LEFT_RIGHT,
        "flipped": Image.Transpose.FLIP_TOP_BOTTOM,
        "turned-half": Image.Transpose.ROTATE_180,
        "turned-right": Image.Transpose.ROTATE_270,
        "turned-left": Image.Transpose.ROTATE_90,
        "transposed": Image.Transpose.TRANSPOSE,
        "transversed": Image.Transpose.TRANSVERSE,
    }.items():
        turned = imaging.signals_of(imaging.decode_image(images.encode(photo.transpose(transpose), "PNG"), **LIMITS))
        assert imaging.phash_distance(reference[name].phash, turned.phash) <= 2, name
        assert imaging.pdq_distance(reference[name].pdq, turned.pdq) <= 16, name


def _reference_of(photo: Image.Image) -> list[imaging.Variant]:
    return imaging.reference_variants(imaging.decode_image(images.encode(photo, "PNG"), **LIMITS))


def test_every_variant_of_the_set_is_computed_in_order_and_only_the_picture_has_a_sha256():
    computed = _reference("rocket")
    assert [v.name for v in computed] == list(imaging.REFERENCE_VARIANTS)
    assert computed[0].signals.sha256 is not None
    assert all(v.signals.sha256 is None for v in computed[1:])
    assert (
        len(set(imaging.REFERENCE_VARIANTS))
        == len(imaging.REFERENCE_VARIANTS)
        == 8 + len(variants.CROPS) + len(variants.PADS) + len(variants.TURNS) + len(variants.BADGES)
    )
    assert (len(variants.CROPS), len(variants.PADS), len(variants.TURNS), len(variants.BADGES)) == (
        1 + 25 + 25 + 25 + 49,
        17,
        8,
        5 * 4 * 4,
    )


def test_the_wire_form_round_trips_and_refuses_another_variant_set():
    computed = _reference("rocket")
    body = imaging.variants_to_dict(computed)
    parsed = imaging.variants_from_dict(body)
    assert [(v.name, v.signals.phash, v.signals.pdq) for v in parsed] == [
        (v.name, v.signals.phash, v.signals.pdq) for v in computed
    ]
    with pytest.raises(BadHash, match="variant_set"):
        imaging.variants_from_dict({**body, "variant_set": imaging.VARIANT_SET + 1})
    missing = {**body, "variants": {k: v for k, v in body["variants"].items() if k != "mirrored"}}
    with pytest.raises(BadHash, match="variants"):
        imaging.variants_from_dict(missing)
    with pytest.raises(BadHash, match="crop90-0-0"):
        imaging.variants_from_dict({**body, "variants": {**body["variants"], "crop90-0-0": {"phash": "zz"}}})
    plain = {key: body[key] for key in ("phash", "pdq", "pdq_quality", "sha256")}
    assert [v.name for v in imaging.variants_from_dict(plain)] == [imaging.IDENTITY]


def test_a_variant_is_stored_under_a_descriptor_that_names_the_variant_set():
    base = imaging.descriptor_key()
    assert imaging.variant_descriptor(base, imaging.IDENTITY) == base
    assert imaging.variant_descriptor(base, "mirrored") == f"{base};variants={imaging.VARIANT_SET}"
    assert len(imaging.variant_descriptor(base, "mirrored")) <= 200


def test_borders_are_trimmed_and_a_busy_picture_is_left_alone():
    photo = images.photo("astronaut", (400, 300))
    framed = ImageOps.expand(photo, border=(30, 20, 30, 20), fill=(255, 255, 255))
    box = candidates.trim_box(_decoded(framed).luma)
    assert box is not None
    top, left, height, width = box
    assert abs(top - 20) <= 2 and abs(left - 30) <= 2 and abs(height - 300) <= 4 and abs(width - 400) <= 4
    assert candidates.trim_box(_decoded(photo).luma) is None


def test_an_older_variant_set_stays_comparable_name_for_name_and_an_unknown_one_does_not():
    base = imaging.descriptor_key()
    assert imaging.is_comparable(base, base, imaging.IDENTITY)
    assert imaging.is_comparable(imaging.variant_descriptor(base, "crop80-25-75"), base, "crop80-25-75")
    # Set 1 cut its crops from the reduced luma: the same regions, the same hashes.
    assert imaging.is_comparable(f"{base};variants=1", base, "mirrored")
    assert imaging.is_comparable(f"{base};variants=1", base, "crop70-0-100")
    # Named by set 1's own crop places, which set 3 moved: set 1 had crop70-25-25, never crop90-25-0.
    assert imaging.is_comparable(f"{base};variants=1", base, "crop70-25-25")
    assert not imaging.is_comparable(f"{base};variants=1", base, "crop90-25-0")
    assert not imaging.is_comparable(f"{base};variants=1", base, "no-such-variant")
    # Set 2 cut the same crops from the variant grid; the pads came with set 3.
    assert imaging.is_comparable(f"{base};variants=2", base, "crop90-50-50")
    assert not imaging.is_comparable(f"{base};variants=2", base, "bordered12-white")
    assert imaging.is_comparable(imaging.variant_descriptor(base, "bordered12-white"), base, "bordered12-white")
    # Set 3 computed every variant but the badges as sets 4 and 5 do.
    assert imaging.is_comparable(f"{base};variants=3", base, "turned+2-corners")
    assert imaging.is_comparable(f"{base};variants=3", base, "crop90-25-0")
    assert not imaging.is_comparable(f"{base};variants=3", base, "badge-top-right30-170")
    # Set 4's badges (squares of the grid, flush with the corner) keep their meaning under their names;
    # set 5 computes other badges, under other names.
    assert imaging.is_comparable(f"{base};variants=4", base, "badge-top-right30-170")
    assert imaging.is_comparable(f"{base};variants=4", base, "crop90-25-0")
    assert not imaging.is_comparable(f"{base};variants=4", base, "badge-top-right30-m2-170")
    assert not imaging.is_comparable(
        imaging.variant_descriptor(base, "badge-top-right30-170"), base, "badge-top-right30-170"
    )
    assert imaging.is_comparable(
        imaging.variant_descriptor(base, "badge-top-right30-m2-170"), base, "badge-top-right30-m2-170"
    )
    assert not imaging.is_comparable(f"{base};variants={imaging.VARIANT_SET + 1}", base, "mirrored")
    assert not imaging.is_comparable(imaging.variant_descriptor(base, "mirrored"), "optout-signals/1;other", "mirrored")
    assert not imaging.is_comparable(base, base, "mirrored")  # a variant under the picture's own key


def test_crops_come_from_the_variant_grid_whatever_the_picture_size():
    # The same photo at 12 megapixels and at a tenth of that: each crop is cut from a grid of the same
    # size, so each variant's hashes stay within a few bits, and only the picture's sha256 differs.
    big = _reference_of_jpeg(images.photo("astronaut", (4000, 3000)))
    small = _reference_of_jpeg(images.photo("astronaut", (1200, 900)))
    for one, other in zip(big[1:], small[1:], strict=True):
        assert one.name == other.name
        assert imaging.phash_distance(one.signals.phash, other.signals.phash) <= 4, one.name
        assert imaging.pdq_distance(one.signals.pdq, other.signals.pdq) <= 24, one.name
    grid = variants.variant_grid(_decoded(images.photo("coffee", (333, 222))))
    assert grid.shape == (variants.GRID_SIDE, variants.GRID_SIDE) and grid.dtype.name == "float32"


def test_a_crop_variant_matches_the_picture_cropped_by_the_same_box():
    photo = images.photo("chelsea", (1600, 1200))
    by_name = {v.name: v.signals for v in _reference_of_jpeg(photo)}
    for name, keep, fx, fy in variants.CROPS[::7]:
        top, left, height, width = variants.crop_box(1200, 1600, keep, fx, fy)
        cropped = imaging.signals_of(_decoded(photo.crop((left, top, left + width, top + height)), 92))
        assert imaging.phash_distance(by_name[name].phash, cropped.phash) <= 6, name
        assert imaging.pdq_distance(by_name[name].pdq, cropped.pdq) <= 31, name


def _reference_of_jpeg(photo: Image.Image) -> list[imaging.Variant]:
    return imaging.reference_variants(_decoded(photo, 90))


@pytest.mark.parametrize("name", ["moon", "hubble_deep_field"])
def test_a_screenshot_of_a_picture_with_a_dark_background_of_its_own_is_cut_at_the_picture(name):
    # The loose trim runs on from the page's white margin into the picture's own black sky; the cut at
    # the largest colour jump (white to black) is the picture's edge.
    reference = _reference(name)
    comparison = _verdict(reference, _screenshot(images.photo(name)))
    assert comparison.strength in ("weak", "strong"), comparison
    assert comparison.candidate_variant == "layered"
    assert "bars and margins around it cut away" in imaging.describe(
        comparison.reference_variant, comparison.candidate_variant
    )
