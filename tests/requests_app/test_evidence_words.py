"""Evidence in words: each verdict and band reads as what a reviewer would say of the two pictures."""

import pytest

from requests_app.admin.evidence import closest_strong_match, evidence_words
from requests_app.models import RemovalItem


def item(state, *, phash=None, pdq=None, same=None, pk=1, image_phash="", identical=False, inconsistent=False):
    return RemovalItem(
        pk=pk,
        state=state,
        phash_distance=phash,
        pdq_distance=pdq,
        sha256_equal=same,
        bytes_identical=identical,
        hashes_inconsistent=inconsistent,
        image_phash=image_phash,
    )


@pytest.mark.parametrize(
    ("verdict", "words"),
    [
        (
            item("match_strong", phash=0, pdq=0, same=True, identical=True),
            "the very same file as a reference picture (our server hashed both)",
        ),
        # A sha256 the device sent is a claim: the words come from the perceptual hashes.
        (
            item("match_weak", phash=1, pdq=None, same=True),
            "probably the same picture, but only one fingerprint could be compared",
        ),
        (
            item("no_match", phash=30, pdq=120, same=True, inconsistent=True),
            "hashes that cannot come from one picture: the same sha256, but far-apart perceptual hashes",
        ),
        (item("match_strong", phash=2, pdq=6), "the same picture, recompressed or resized"),
        (item("match_strong", phash=2, pdq=None), "the same picture, recompressed or resized"),
        (item("match_strong", phash=7, pdq=28), "the same picture, edited a little (cropped, filtered or re-framed)"),
        (
            item("match_weak", phash=7, pdq=60),
            "possibly the same picture, changed more (a crop, a filter or a frame): look closely",
        ),
        (
            item("match_weak", phash=7, pdq=None),
            "probably the same picture, but only one fingerprint could be compared",
        ),
        (item("no_match", phash=30, pdq=120), "probably a different picture"),
        (item("refused"), "no picture to compare: the address is not on the public internet"),
        (item("pending"), "not compared yet"),
    ],
)
def test_evidence_reads_as_words(settings, verdict, words):
    settings.OPTOUT_PHASH_THRESHOLD, settings.OPTOUT_PDQ_THRESHOLD = 8, 31
    assert evidence_words(verdict) == words


def test_a_no_match_is_shown_beside_the_closest_strong_match():
    lost = item("no_match", pk=1, image_phash="ffffffffffffffff")
    far = item("match_strong", pk=2, image_phash="0000000000000000")
    near = item("match_strong", pk=3, image_phash="fffffffffffffff0")
    weak = item("match_weak", pk=4, image_phash="ffffffffffffffff")
    comparison = closest_strong_match(lost, [lost, far, near, weak])
    assert (comparison.item.pk, comparison.bits_apart) == (3, 4)
    assert closest_strong_match(near, [lost, far, near]) is None  # only no-match items get one
    assert closest_strong_match(lost, [lost, weak]) is None
