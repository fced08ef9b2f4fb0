"""Evidence in words for the reviewer, beside the bits it comes from.

A reviewer reads "the same picture, recompressed" faster than "pHash 3 of 64, PDQ 18 of 256". The
words follow the item's verdict and distances; the bands are fractions of the match thresholds, so
they move with the settings. The distances stay on the page beside the words.
"""

from dataclasses import dataclass

from django.conf import settings

from optout.imaging.hashbits import hamming, phash_from_hex
from requests_app.models import ItemState, RemovalItem

# A distance at most this share of its threshold is "nearly identical": what recompression or resizing
# leaves. Above it, but still a match, something was edited.
NEAR_SHARE = 0.4

NO_PICTURE = {
    ItemState.PENDING: "not compared yet",
    ItemState.UNREACHABLE: "no picture to compare: the link could not be reached",
    ItemState.NOT_AN_IMAGE: "no picture to compare: the link does not lead to a picture",
    ItemState.REFUSED: "no picture to compare: the address is not on the public internet",
}


def _near(distance: int | None, threshold: int) -> bool:
    return distance is not None and distance <= threshold * NEAR_SHARE


def evidence_words(item: RemovalItem) -> str:
    """One phrase: what the comparison says the picture at the link is, next to the reference."""
    if item.state in NO_PICTURE:
        return NO_PICTURE[item.state]
    if item.hashes_inconsistent:
        return "hashes that cannot come from one picture: the same sha256, but far-apart perceptual hashes"
    if item.bytes_identical:
        return "the very same file as a reference picture (our server hashed both)"
    phash_near = _near(item.phash_distance, settings.OPTOUT_PHASH_THRESHOLD)
    pdq_near = _near(item.pdq_distance, settings.OPTOUT_PDQ_THRESHOLD)
    if item.state == ItemState.MATCH_STRONG:
        if phash_near and (pdq_near or item.pdq_distance is None):
            return "the same picture, recompressed or resized"
        return "the same picture, edited a little (cropped, filtered or re-framed)"
    if item.state == ItemState.MATCH_WEAK:
        if item.pdq_distance is None:
            return "probably the same picture, but only one fingerprint could be compared"
        return "possibly the same picture, changed more (a crop, a filter or a frame): look closely"
    return "probably a different picture"


@dataclass(frozen=True)
class Comparison:
    """The strong match of the same case closest to a no-match item, to show beside it."""

    item: RemovalItem
    bits_apart: int | None  # pHash distance between the two pictures at the links, if both are known


def closest_strong_match(item: RemovalItem, items: list[RemovalItem]) -> Comparison | None:
    if item.state != ItemState.NO_MATCH:
        return None
    strong = [other for other in items if other.state == ItemState.MATCH_STRONG and other.pk != item.pk]
    if not strong:
        return None

    def apart(other: RemovalItem) -> int | None:
        if not (item.image_phash and other.image_phash):
            return None
        return hamming(phash_from_hex(item.image_phash), phash_from_hex(other.image_phash))

    ranked = sorted(strong, key=lambda other: (apart(other) is None, apart(other) or 0, other.pk))
    return Comparison(item=ranked[0], bits_apart=apart(ranked[0]))
