"""Comparing signals: Hamming distances per family, and the strength of the evidence they give."""

from dataclasses import dataclass

from optout.imaging.hashbits import MAX64, MAX256, hamming
from optout.imaging.hashes import ImageSignals


def phash_distance(a: int, b: int) -> int:
    if not (0 <= a <= MAX64 and 0 <= b <= MAX64):
        raise ValueError("a pHash is an unsigned 64-bit value")
    return hamming(a, b)


def pdq_distance(a: int, b: int) -> int:
    if not (0 <= a <= MAX256 and 0 <= b <= MAX256):
        raise ValueError("a PDQ hash is an unsigned 256-bit value")
    return hamming(a, b)


@dataclass(frozen=True)
class Comparison:
    """How a candidate compares with a reference, family by family.

    A distance is None when either side lacks that family (no PDQ below the quality floor).
    ``strength`` is "strong" when both perceptual families match or the bytes are identical,
    "weak" when exactly one family matches, None otherwise.
    """

    phash_distance: int | None
    phash_match: bool
    pdq_distance: int | None
    pdq_match: bool
    sha256_equal: bool
    strength: str | None

    def _rank(self) -> tuple:
        rank = {"strong": 2, "weak": 1, None: 0}[self.strength]
        pdq = self.pdq_distance / 256 if self.pdq_distance is not None else 1.0
        phash = self.phash_distance / 64 if self.phash_distance is not None else 1.0
        return (-rank, min(pdq, phash), pdq + phash)


def compare(
    reference: ImageSignals, candidate: ImageSignals, *, phash_threshold: int, pdq_threshold: int
) -> Comparison:
    phash_d = phash_distance(reference.phash, candidate.phash)
    if reference.pdq is None or candidate.pdq is None:
        pdq_d = None
    else:
        pdq_d = pdq_distance(reference.pdq, candidate.pdq)
    phash_match = phash_d <= phash_threshold
    pdq_match = pdq_d is not None and pdq_d <= pdq_threshold
    sha256_equal = reference.sha256 is not None and reference.sha256 == candidate.sha256
    if sha256_equal or (phash_match and pdq_match):
        strength = "strong"
    elif phash_match or pdq_match:
        strength = "weak"
    else:
        strength = None
    return Comparison(phash_d, phash_match, pdq_d, pdq_match, sha256_equal, strength)


def best_comparison(
    references: list[ImageSignals], candidate: ImageSignals, *, phash_threshold: int, pdq_threshold: int
) -> Comparison:
    """The best comparison of a candidate against one reference image's signals (the image, crops, mirrors...).

    Best means strongest, then closest (distances as a share of each hash's bits).
    """
    if not references:
        raise ValueError("a reference has at least one set of signals")
    comparisons = [
        compare(reference, candidate, phash_threshold=phash_threshold, pdq_threshold=pdq_threshold)
        for reference in references
    ]
    return min(comparisons, key=Comparison._rank)
