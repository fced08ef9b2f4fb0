import hashlib
import io
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from optout.imaging import (
    DESCRIPTOR,
    ImageRejected,
    ImageSignals,
    best_comparison,
    compare,
    compute_signals,
    compute_signals_naive,
    descriptor_key,
    judge,
    pdq_distance,
    pdq_from_pdqhash_vector,
    phash_distance,
)
from optout.imaging.hashbits import MAX64, BadHash, pdq_to_hex
from tests import images

CAPS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 50_000_000}
THRESHOLDS = {"phash_threshold": 8, "pdq_threshold": 31}
ROOT = Path(__file__).resolve().parents[3]


def signals(data: bytes) -> ImageSignals:
    return compute_signals(data, **CAPS)


def make(phash=0, pdq=0, quality=100, sha256="a" * 64, by_server=False) -> ImageSignals:
    return ImageSignals(phash=phash, pdq=pdq, pdq_quality=quality, sha256=sha256, hashed_by_server=by_server)


# --- Refusals --------------------------------------------------------------------------------


def rejection(data: bytes, **caps) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        compute_signals(data, **{**CAPS, **caps})
    return info.value


def test_rejects_empty_bytes():
    assert rejection(b"").code == "empty"


def test_rejects_a_file_over_the_byte_cap():
    data = images.photo_jpeg(size=(320, 240))
    assert rejection(data, max_bytes=len(data) - 1).code == "too_large"
    assert signals(data).width == 320  # the same file at the cap is accepted


def test_rejects_more_pixels_than_the_cap_from_the_header():
    data = images.photo_jpeg(size=(320, 240))
    assert rejection(data, max_pixels=320 * 240 - 1).code == "too_many_pixels"


def test_rejects_pixel_bomb_before_decoding_without_a_warning():
    bomb = images.pixel_bomb_png(100_000, 100_000)
    assert len(bomb) < 2000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (DecompressionBombWarning included) fails the test
        start = time.perf_counter()
        error = rejection(bomb)
        elapsed = time.perf_counter() - start
    assert error.code == "too_many_pixels"
    assert elapsed < 0.5  # decoding 10^10 pixels would take minutes and gigabytes


def test_rejects_a_bomb_in_pillows_warning_band_as_an_error():
    # Between Pillow's MAX_IMAGE_PIXELS and twice that, Pillow only warns; we refuse.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = rejection(images.pixel_bomb_png(side, side), max_pixels=side * side * 2)
    assert error.code == "too_many_pixels"


def test_rejects_a_truncated_jpeg_as_corrupt():
    assert rejection(images.truncated_jpeg()).code == "corrupt"


def test_rejects_bytes_that_are_no_image():
    assert rejection(images.random_bytes()).code == "unsupported_format"


@pytest.mark.parametrize(
    "build", [images.eps_file, images.pdf_file, images.svg_file, images.tiff_file, images.bmp_file]
)
def test_refuses_formats_outside_the_allow_list(build):
    assert rejection(build()).code == "unsupported_format"


def test_rejection_messages_are_plain_and_never_echo_the_bytes():
    data = b"<script>alert(1)</script>" + images.random_bytes(64)
    error = rejection(data)
    assert "script" not in error.message and "script" not in str(error)
    assert error.message == "The file is not a JPEG, PNG, WebP or GIF image."


# --- Decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        images.photo_jpeg(),
        images.photo_png(),
        images.photo_png(mode="L"),
        images.photo_png(mode="P"),
        images.photo_png(mode="I;16"),
        images.photo_webp(),
    ],
    ids=["jpeg", "png", "png-grey", "png-palette", "png-16bit", "webp"],
)
def test_each_allowed_format_hashes_like_the_upright_photo(data):
    reference = signals(images.photo_jpeg(quality=95))
    assert (signals(data).width, signals(data).height) == (640, 480)
    result = compare(reference, signals(data), **THRESHOLDS)
    assert result.strength == "strong", result


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    grey = signals(images.photo_png(mode="L"))
    deep = signals(images.photo_png(mode="I;16"))
    assert phash_distance(grey.phash, deep.phash) <= 2
    assert pdq_distance(grey.pdq, deep.pdq) <= 10


def test_transparency_is_composited_on_white():
    data = images.photo_png(mode="RGBA")
    image = Image.open(io.BytesIO(data)).convert("RGBA")
    white = Image.new("RGB", image.size, (255, 255, 255))
    white.paste(image, mask=image.getchannel("A"))
    black = Image.new("RGB", image.size, (0, 0, 0))
    black.paste(image, mask=image.getchannel("A"))
    on_white = signals(images.encode(white, "PNG"))
    assert signals(data).phash == on_white.phash
    assert signals(data).pdq == on_white.pdq
    assert signals(data).phash != signals(images.encode(black, "PNG")).phash


def test_gif_uses_its_first_frame():
    gif = signals(images.photo_gif(("astronaut", "coffee")))
    first = signals(images.photo_jpeg("astronaut", size=(320, 240)))
    second = signals(images.photo_jpeg("coffee", size=(320, 240)))
    assert compare(first, gif, **THRESHOLDS).strength == "strong"
    assert compare(second, gif, **THRESHOLDS).strength is None


def test_exif_rotated_photo_hashes_like_the_upright_one():
    upright = signals(images.photo_jpeg("chelsea", size=(640, 480)))
    rotated = images.photo_jpeg("chelsea", size=(640, 480), exif_orientation=6)
    turned = signals(rotated)
    assert (turned.width, turned.height) == (640, 480)
    assert compare(upright, turned, **THRESHOLDS).strength == "strong"
    # The stored pixels alone (orientation ignored) are a different picture to both hashes.
    raw = Image.open(io.BytesIO(rotated))
    raw_signals = signals(images.encode(raw.convert("RGB"), "PNG"))
    assert (raw_signals.width, raw_signals.height) == (480, 640)
    assert compare(upright, raw_signals, **THRESHOLDS).strength is None


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 7, 8])
def test_every_exif_orientation_is_applied(orientation):
    upright = signals(images.photo_jpeg("coffee", size=(400, 300)))
    turned = signals(images.photo_jpeg("coffee", size=(400, 300), exif_orientation=orientation))
    assert phash_distance(upright.phash, turned.phash) <= 4


def test_sha256_is_of_the_exact_bytes():
    data = images.photo_jpeg()
    assert signals(data).sha256 == hashlib.sha256(data).hexdigest()


def test_computing_signals_never_starts_a_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a subprocess was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr("os.system", refuse)
    monkeypatch.setattr("os.posix_spawn", refuse)
    for data in (images.photo_jpeg(), images.photo_png(), images.photo_webp(), images.photo_gif()):
        assert signals(data).phash
        assert compute_signals_naive(data).phash
    for data in (images.eps_file(), images.pdf_file()):
        assert rejection(data).code == "unsupported_format"


def test_module_imports_no_django():
    code = "import optout.imaging, sys; assert not [m for m in sys.modules if m.startswith('django')], 'django'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- Matching -----------------------------------------------------------------------------------


def test_resized_and_recompressed_copies_match_strongly():
    original = signals(images.photo_jpeg("astronaut", size=(1024, 768), quality=95))
    for copy in (
        images.photo_jpeg("astronaut", size=(512, 384), quality=70),
        images.photo_webp("astronaut", size=(800, 600), quality=60),
        images.photo_png("astronaut", size=(300, 225)),
    ):
        result = compare(original, signals(copy), **THRESHOLDS)
        assert result.strength == "strong", result
        assert not result.sha256_equal


def test_an_unrelated_photo_does_not_match():
    for other in ("coffee", "rocket", "motorcycle_left"):
        result = compare(signals(images.photo_jpeg("astronaut")), signals(images.photo_jpeg(other)), **THRESHOLDS)
        assert result.strength is None, (other, result)
        assert result.phash_distance > 8 and result.pdq_distance > 31


def test_fast_pipeline_stays_close_to_the_naive_one():
    for name in ("astronaut", "chelsea", "grass", "retina"):
        for size in ((1024, 768), (320, 240)):
            data = images.photo_jpeg(name, size=size)
            fast, naive = signals(data), compute_signals_naive(data)
            assert phash_distance(fast.phash, naive.phash) <= 2, (name, size)
            assert pdq_distance(fast.pdq, naive.pdq) <= 10, (name, size)
            assert abs(fast.pdq_quality - naive.pdq_quality) <= 2
            assert (fast.width, fast.height, fast.sha256) == (naive.width, naive.height, naive.sha256)


def test_without_reduction_pdq_equals_pdqhash_bit_for_bit():
    # Under REDUCE_MIN_SIDE on the short side nothing is reduced: only the arithmetic differs.
    for name in ("astronaut", "coffee", "brick", "hubble_deep_field"):
        data = images.photo_png(name, size=(500, 375))
        assert signals(data).pdq == compute_signals_naive(data).pdq, name


def test_low_quality_pdq_is_discarded():
    flat = images.encode(Image.new("RGB", (200, 150), (90, 120, 200)), "PNG")
    result = signals(flat)
    assert result.pdq_quality < 50
    assert result.pdq is None
    assert compare(result, result, **THRESHOLDS).pdq_distance is None


# --- PDQ bit order: ThreatExchange's hex format --------------------------------------------------


def test_pdq_hex_follows_threatexchange_bit_order():
    """ThreatExchange: bit k = i*16 + j is set when DCT coefficient [i][j] exceeds the median
    (pdqBuffer16x16ToBits, Hash256.setBit: w[k >> 4] |= 1 << (k & 15)), and Hash256.format prints
    "%04hx" of w[15], w[14], ..., w[0]. pdqhash.compute_float returns the 16x16 coefficients
    row-major but reversed; rebuild the hex that way and compare with ours."""
    rgb = images.photo("chelsea", (300, 200))
    coefficients, _ = pdqhash.compute_float(np.asarray(rgb))
    buffer16x16 = np.asarray(coefficients)[::-1].reshape(16, 16)
    median = np.partition(buffer16x16.ravel(), 127)[127]
    words = [0] * 16
    for i in range(16):
        for j in range(16):
            if buffer16x16[i][j] > median:
                k = i * 16 + j
                words[k >> 4] |= 1 << (k & 15)
    threatexchange_hex = "".join(f"{words[w]:04x}" for w in range(15, -1, -1))

    vector, _ = pdqhash.compute(np.asarray(rgb))
    assert pdq_to_hex(pdq_from_pdqhash_vector(vector)) == threatexchange_hex
    assert pdq_to_hex(signals(images.encode(rgb, "PNG")).pdq) == threatexchange_hex


# --- compare() and best_comparison() -------------------------------------------------------------


def test_two_agreeing_families_are_strong():
    result = compare(make(phash=0b1111, pdq=0b11), make(phash=0, pdq=0, sha256="b" * 64), **THRESHOLDS)
    assert (result.phash_distance, result.pdq_distance) == (4, 2)
    assert result.phash_match and result.pdq_match and not result.sha256_equal
    assert result.strength == "strong"


def test_equal_sha256_with_disagreeing_hashes_is_inconsistent_and_never_a_match():
    for by_server in (False, True):
        result = compare(
            make(phash=0, pdq=0, by_server=by_server), make(phash=MAX64, pdq=None, by_server=True), **THRESHOLDS
        )
        assert result.sha256_equal and result.inconsistent and not result.bytes_identical
        assert result.strength is None
    pdq_apart = compare(make(phash=0, pdq=0), make(phash=0, pdq=(1 << 40) - 1), **THRESHOLDS)
    assert pdq_apart.inconsistent and pdq_apart.strength is None


def test_a_claimed_equal_sha256_adds_nothing_to_the_perceptual_evidence():
    device = compare(make(phash=0, pdq=None, quality=0), make(phash=1, pdq=0, by_server=True), **THRESHOLDS)
    assert device.sha256_equal and not device.inconsistent and not device.bytes_identical
    assert device.strength == "weak" and not device.reference_hashed_by_server
    listed = compare(make(phash=0, pdq=None, quality=0, by_server=True), make(phash=0, pdq=0), **THRESHOLDS)
    assert not listed.bytes_identical and listed.strength == "weak"


def test_equal_sha256_is_strong_when_the_server_hashed_both_sides():
    result = compare(make(phash=0, pdq=None, quality=0, by_server=True), make(phash=0, by_server=True), **THRESHOLDS)
    assert result.bytes_identical and result.reference_hashed_by_server and result.strength == "strong"
    data = images.photo_jpeg("coffee")
    assert compare(signals(data), signals(data), **THRESHOLDS).bytes_identical


def test_a_variant_sharing_the_pictures_sha256_does_not_make_it_inconsistent():
    upright, mirrored = make(phash=0, pdq=0), make(phash=MAX64, pdq=(1 << 256) - 1)
    candidate = make(phash=1, pdq=1, by_server=True)
    best = best_comparison([mirrored, upright], candidate, **THRESHOLDS)
    assert best.strength == "strong" and not best.inconsistent
    alone = best_comparison([mirrored], candidate, **THRESHOLDS)
    assert alone.inconsistent and alone.strength is None


def test_judge_flags_an_inconsistent_picture_even_when_another_matches():
    candidate = make(phash=0, pdq=0, by_server=True)
    genuine = [make(phash=1, pdq=1, sha256="b" * 64)]
    forged = [make(phash=MAX64, pdq=None, quality=0)]
    assert judge([genuine], candidate, **THRESHOLDS).strength == "strong"
    flagged = judge([genuine, forged], candidate, **THRESHOLDS)
    assert flagged.inconsistent and flagged.strength is None
    with pytest.raises(ValueError):
        judge([], candidate, **THRESHOLDS)


def test_one_agreeing_family_is_weak():
    phash_only = compare(make(phash=0, pdq=0), make(phash=1, pdq=(1 << 256) - 1, sha256="b" * 64), **THRESHOLDS)
    assert phash_only.phash_match and not phash_only.pdq_match
    assert phash_only.strength == "weak"
    pdq_only = compare(make(phash=0, pdq=0), make(phash=(1 << 64) - 1, pdq=1, sha256="b" * 64), **THRESHOLDS)
    assert pdq_only.pdq_match and not pdq_only.phash_match
    assert pdq_only.strength == "weak"
    no_pdq = compare(make(phash=0, pdq=None, quality=10), make(phash=0, pdq=0, sha256="b" * 64), **THRESHOLDS)
    assert no_pdq.strength == "weak" and no_pdq.pdq_distance is None


def test_no_agreeing_family_is_no_match():
    result = compare(make(phash=0, pdq=0), make(phash=(1 << 64) - 1, pdq=(1 << 256) - 1, sha256="b" * 64), **THRESHOLDS)
    assert result.strength is None
    assert (result.phash_distance, result.pdq_distance) == (64, 256)


def test_thresholds_are_inclusive():
    result = compare(make(phash=0), make(phash=0xFF, sha256="b" * 64), phash_threshold=8, pdq_threshold=0)
    assert result.phash_match
    assert not compare(
        make(phash=0), make(phash=0x1FF, sha256="b" * 64), phash_threshold=8, pdq_threshold=0
    ).phash_match


def test_best_comparison_picks_the_strongest_variant():
    candidate = make(phash=0, pdq=0, sha256="c" * 64)
    references = [
        make(phash=(1 << 64) - 1, pdq=(1 << 256) - 1),  # nothing
        make(phash=0b111, pdq=(1 << 256) - 1),  # weak, pHash 3
        make(phash=0b1, pdq=0b1),  # strong
        make(phash=0b11, pdq=(1 << 256) - 1),  # weak, pHash 2
    ]
    best = best_comparison(references, candidate, **THRESHOLDS)
    assert best.strength == "strong" and best.phash_distance == 1
    weak = best_comparison([references[0], references[1], references[3]], candidate, **THRESHOLDS)
    assert weak.strength == "weak" and weak.phash_distance == 2
    with pytest.raises(ValueError):
        best_comparison([], candidate, **THRESHOLDS)


def test_a_mirrored_copy_matches_through_a_mirrored_reference_variant():
    image = images.photo("astronaut", (640, 480))
    upright = signals(images.encode(image, "PNG"))
    mirrored_reference = signals(images.encode(ImageOps.mirror(image), "PNG"))
    candidate = signals(images.photo_jpeg("astronaut", size=(640, 480), exif_orientation=None))
    flipped_candidate = signals(images.encode(ImageOps.mirror(image), "JPEG", quality=80))
    assert compare(upright, flipped_candidate, **THRESHOLDS).strength is None
    assert best_comparison([upright, mirrored_reference], flipped_candidate, **THRESHOLDS).strength == "strong"
    assert best_comparison([upright, mirrored_reference], candidate, **THRESHOLDS).strength == "strong"


def test_distances_refuse_values_of_the_wrong_family():
    with pytest.raises(ValueError):
        phash_distance(1 << 64, 0)
    with pytest.raises(ValueError):
        pdq_distance(-1, 0)


# --- Serialisation and descriptor ----------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip():
    original = signals(images.photo_jpeg())
    data = original.to_dict()
    assert set(data) == {"phash", "pdq", "pdq_quality", "sha256"}
    assert len(data["phash"]) == 16 and len(data["pdq"]) == 64
    again = ImageSignals.from_dict(data)
    assert (again.phash, again.pdq, again.pdq_quality, again.sha256) == (
        original.phash,
        original.pdq,
        original.pdq_quality,
        original.sha256,
    )
    assert again.to_dict() == data


def test_from_dict_discards_pdq_below_the_quality_floor():
    data = {"phash": "0" * 16, "pdq": "f" * 64, "pdq_quality": 49, "sha256": "a" * 64}
    assert ImageSignals.from_dict(data).pdq is None
    assert ImageSignals.from_dict({**data, "pdq_quality": 50}).pdq == (1 << 256) - 1


GOOD = {"phash": "0123456789abcdef", "pdq": "0" * 64, "pdq_quality": 80, "sha256": "a" * 64}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phash": "0123"}, "phash"),
        ({"phash": "0123456789abcdeg"}, "phash"),
        ({"phash": 12345}, "phash"),
        ({"pdq": "0" * 63}, "pdq"),
        ({"pdq": 0}, "pdq"),
        ({"pdq_quality": 101}, "pdq_quality"),
        ({"pdq_quality": "80"}, "pdq_quality"),
        ({"pdq_quality": True}, "pdq_quality"),
        ({"sha256": "a" * 63}, "sha256"),
        ({"extra": 1}, "signals"),
    ],
)
def test_from_dict_rejects_malformed_signals_naming_the_field(change, field):
    with pytest.raises(BadHash, match=f"^{field}:"):
        ImageSignals.from_dict({**GOOD, **change})


def test_from_dict_rejects_missing_keys_and_non_objects():
    with pytest.raises(BadHash, match="missing"):
        ImageSignals.from_dict({k: v for k, v in GOOD.items() if k != "sha256"})
    with pytest.raises(BadHash):
        ImageSignals.from_dict(["not", "an", "object"])
    assert ImageSignals.from_dict(GOOD).phash == 0x0123456789ABCDEF


def test_descriptor_names_libraries_versions_and_parameters():
    from importlib.metadata import version

    key = descriptor_key()
    assert len(key) <= 200 and key == descriptor_key() == DESCRIPTOR["key"]
    assert f"imagehash-{version('ImageHash')}" in key
    assert DESCRIPTOR["phash"]["hash_size"] == 8 and DESCRIPTOR["phash"]["highfreq_factor"] == 4
    assert DESCRIPTOR["pdq"]["bits"] == 256 and DESCRIPTOR["pdq"]["quality_floor"] == 50
    assert DESCRIPTOR["pdq"]["reference_version"] == version("pdqhash")
    assert signals(images.photo_jpeg(size=(64, 48))).descriptor == key
