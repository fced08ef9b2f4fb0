"""Comparing signals: Hamming distances per family, and the strength of the evidence they give.

A sha256 is a claim unless the server computed it: image sha256s are public (the public feed and
img2dataset metadata carry them), so a requester who never had the picture can send one. Equal sha256s
therefore prove identical bytes only when the server hashed both sides. And identical bytes hash to the
same perceptual hashes under one descriptor: when the sha256s are equal but a perceptual family is further
apart than its match threshold (the widest gap two copies of one picture may show), the hashes cannot
come from one picture. Such a comparison is *inconsistent*: flagged, and never a match.
"""

from dataclasses import dataclass, replace

from optout.imaging.hashbits import MAX64, MAX256, hamming
from optout.imaging.hashes import ImageSignals
from optout.imaging.variants import IDENTITY, Variant, is_guessed_patch


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
    ``sha256_equal``: the two sha256s are equal (perhaps only as claimed). ``bytes_identical``: equal, and
    the server hashed both sides. ``inconsistent``: equal sha256s with perceptual hashes that cannot come
    from one picture. ``reference_hashed_by_server``: whether the reference side was hashed by the server
    (False: computed on the requester's device). ``strength`` is "strong" when both perceptual families
    match or the bytes are identical, "weak" when exactly one family matches or PDQ falls in the review
    band, None otherwise (and always None when inconsistent).
    """

    phash_distance: int | None
    phash_match: bool
    pdq_distance: int | None
    pdq_match: bool
    sha256_equal: bool
    strength: str | None
    bytes_identical: bool = False
    inconsistent: bool = False
    reference_hashed_by_server: bool = False
    in_review_band: bool = False  # PDQ beyond its threshold but within the review band: a near miss, weak
    reference_variant: str = ""  # which reference variant matched ("" the picture itself)
    candidate_variant: str = ""  # which candidate variant matched ("" the picture as fetched)

    def _rank(self) -> tuple:
        rank = {"strong": 2, "weak": 1, None: 0}[self.strength]
        pdq = self.pdq_distance / 256 if self.pdq_distance is not None else 1.0
        phash = self.phash_distance / 64 if self.phash_distance is not None else 1.0
        return (-rank, min(pdq, phash), pdq + phash)


def compare(
    reference: ImageSignals,
    candidate: ImageSignals,
    *,
    phash_threshold: int,
    pdq_threshold: int,
    pdq_review: int | None = None,
) -> Comparison:
    phash_d = phash_distance(reference.phash, candidate.phash)
    if reference.pdq is None or candidate.pdq is None:
        pdq_d = None
    else:
        pdq_d = pdq_distance(reference.pdq, candidate.pdq)
    phash_match = phash_d <= phash_threshold
    pdq_match = pdq_d is not None and pdq_d <= pdq_threshold
    in_band = not pdq_match and pdq_review is not None and pdq_d is not None and pdq_d <= pdq_review
    sha256_equal = reference.sha256 is not None and reference.sha256 == candidate.sha256
    inconsistent = sha256_equal and (not phash_match or (pdq_d is not None and not pdq_match))
    bytes_identical = sha256_equal and not inconsistent and reference.hashed_by_server and candidate.hashed_by_server
    if inconsistent:
        strength = None
    elif bytes_identical or (phash_match and pdq_match):
        strength = "strong"
    elif phash_match or pdq_match or in_band:
        strength = "weak"
    else:
        strength = None
    return Comparison(
        phash_d,
        phash_match,
        pdq_d,
        pdq_match,
        sha256_equal,
        strength,
        bytes_identical=bytes_identical,
        inconsistent=inconsistent,
        reference_hashed_by_server=reference.hashed_by_server,
        in_review_band=in_band and not inconsistent,
    )


def _best_of_picture(comparisons: list[Comparison]) -> Comparison:
    """Strongest, then closest. Variants of one picture may share its sha256 while their perceptual hashes
    differ (a mirror), so the picture is inconsistent with the candidate only when every comparison whose
    sha256s are equal is; the result is then that inconsistent comparison."""
    same_sha256 = [comparison for comparison in comparisons if comparison.sha256_equal]
    if same_sha256 and all(comparison.inconsistent for comparison in same_sha256):
        return min(same_sha256, key=Comparison._rank)
    return min((comparison for comparison in comparisons if not comparison.inconsistent), key=Comparison._rank)


def best_match(
    pictures: list[list[Variant]],
    candidates: list[Variant],
    *,
    phash_threshold: int,
    pdq_threshold: int,
    pdq_review: int | None = None,
) -> Comparison:
    """The evidence a candidate gives against a case's reference pictures, naming the variants that matched.

    ``pictures`` holds each reference picture's variants (its own signals and those of
    ``variants.reference_variants``); ``candidates`` the candidate's (a dataset row's one signal set, or
    ``candidates.candidate_variants`` of a fetched picture). Every candidate variant is compared with every
    variant of each picture, each pair as two pictures are (``compare``: "strong" needs both families to
    agree on the same pair). The best comparison over the pictures, unless one of them is inconsistent
    with the candidate: then that one, so the conflict is flagged and the candidate is not counted as a
    match. bench/match_quality.py counts what trying every pair costs in false matches.

    A reference badge (a guessed patch over a corner) is compared with the candidate as it is only: the
    candidate's painted corners guess at the same logo from the other side, and the other candidate
    variants undo other edits, so a badge against them multiplies guesses (false matches, time) and
    finds no copy that the candidate's own signals or its painted corners would not.
    """
    if not pictures or not all(pictures) or not candidates:
        raise ValueError("a case has at least one reference picture, and each side its own signals")
    per_picture = []
    for picture in pictures:
        comparisons = []
        for reference in picture:
            guessed = is_guessed_patch(reference.name)
            for candidate in candidates:
                if guessed and candidate.name != IDENTITY:
                    continue
                comparison = compare(
                    reference.signals,
                    candidate.signals,
                    phash_threshold=phash_threshold,
                    pdq_threshold=pdq_threshold,
                    pdq_review=pdq_review,
                )
                if reference.name or candidate.name:
                    comparison = replace(comparison, reference_variant=reference.name, candidate_variant=candidate.name)
                comparisons.append(comparison)
        per_picture.append(_best_of_picture(comparisons))
    inconsistent = [comparison for comparison in per_picture if comparison.inconsistent]
    return min(inconsistent or per_picture, key=Comparison._rank)


def _plain(signal_sets: list[ImageSignals]) -> list[Variant]:
    return [Variant(IDENTITY, signals) for signals in signal_sets]


def best_comparison(
    references: list[ImageSignals], candidate: ImageSignals, *, phash_threshold: int, pdq_threshold: int
) -> Comparison:
    """The best comparison of a candidate against one reference image's signal sets (``best_match``'s rule)."""
    if not references:
        raise ValueError("a reference has at least one set of signals")
    return best_match(
        [_plain(references)], _plain([candidate]), phash_threshold=phash_threshold, pdq_threshold=pdq_threshold
    )


def judge(
    pictures: list[list[ImageSignals]], candidate: ImageSignals, *, phash_threshold: int, pdq_threshold: int
) -> Comparison:
    """The evidence a candidate gives against a case's reference pictures, each a list of signal sets."""
    if not pictures:
        raise ValueError("a case has at least one reference picture")
    return best_match(
        [_plain(picture) for picture in pictures],
        _plain([candidate]),
        phash_threshold=phash_threshold,
        pdq_threshold=pdq_threshold,
    )
