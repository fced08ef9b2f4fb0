"""Verification of a removal request: compare each item with the reference signals.

Each reference picture comes with its variants (mirrored, turned, cropped:
``optout.imaging.variants``). For each item: compare the dataset row's stored
signals with every reference variant when the URL is indexed; when they do not
match (or the URL is not indexed), fetch the live URL through the SSRF-safe
fetcher and compare every variant of the fetched picture (borders trimmed,
strips cut, corners left out, small turns undone) with every reference variant,
before the item gets "no match". Then search the index for other rows near any
reference variant. Idempotent: an item that has a verdict is never looked at
again, so a redelivered task finishes the work a killed worker left and changes
nothing else.
"""

import logging

from django.conf import settings

from optout import fetch, imaging
from optout.imaging import hashbits
from optout.index import hashing, matcher
from optout.models import DatasetRow
from requests_app import services
from requests_app.exceptions import TransitionError
from requests_app.models import ItemState, ReferenceSignal, RemovalItem, RemovalRequest, RemovalState

log = logging.getLogger(__name__)

_STRENGTH_TO_STATE = {"strong": ItemState.MATCH_STRONG, "weak": ItemState.MATCH_WEAK, None: ItemState.NO_MATCH}


def signals_of(ref: ReferenceSignal) -> imaging.ImageSignals:
    """One stored signal set (a picture's own, or one of its variants'). Only an upload was hashed by the
    server; signals a device sent are claims (see imaging.compare)."""
    return imaging.ImageSignals(
        phash=hashbits.phash_from_hex(ref.phash),
        pdq=hashbits.pdq_from_hex(ref.pdq) if ref.pdq else None,
        pdq_quality=ref.pdq_quality or 0,
        sha256=ref.sha256 or None,  # a variant carries none
        hashed_by_server=ref.source == ReferenceSignal.Source.UPLOAD,
    )


def reference_signals(removal: RemovalRequest) -> list[list[imaging.Variant]]:
    """The case's reference pictures, each the list of its comparable variants (its own signals first).

    A variant stored under another descriptor (an older pipeline, or a variant set whose variants mean
    something else: ``imaging.is_comparable``) is left out rather than compared as if its bits meant what
    ours mean.
    """
    pictures: dict[int, list[imaging.Variant]] = {}
    for ref in removal.references.all():
        if not imaging.is_comparable(ref.descriptor_key, imaging.descriptor_key(), ref.variant):
            log.warning(
                "request %s: reference %s has descriptor %r; not compared", removal.pk, ref.pk, ref.descriptor_key
            )
            continue
        pictures.setdefault(ref.image_index, []).append(imaging.Variant(ref.variant, signals_of(ref)))
    return list(pictures.values())


def row_signals(row: DatasetRow) -> imaging.ImageSignals | None:
    """The stored signals of a dataset row, or None when it has no perceptual hash yet.

    They count as hashed by the server only when our workers computed them from the URL (``hashed_at``);
    hashes a dataset file listed are the file's claim.
    """
    if row.phash is None:
        return None
    pdq = None
    if row.pdq_0 is not None and row.pdq_quality is not None:  # a PDQ of unknown quality (imported) is no evidence
        pdq = hashbits.pdq_from_words((row.pdq_0, row.pdq_1, row.pdq_2, row.pdq_3))
    return imaging.ImageSignals(
        phash=hashbits.from_signed64(row.phash),
        pdq=pdq,
        pdq_quality=row.pdq_quality or 0,
        sha256=row.sha256 or None,  # unknown: never "equal" to anything
        hashed_by_server=row.hashed_at is not None and not row.fetch_error,
    )


def _source(hashed_by_server: bool) -> str:
    return ReferenceSignal.Source.UPLOAD if hashed_by_server else ReferenceSignal.Source.CLIENT


def _evidence(comparison: "imaging.Comparison", candidate: imaging.ImageSignals) -> dict:
    evidence = {
        "reference_variant": comparison.reference_variant,
        "candidate_variant": comparison.candidate_variant,
        "phash_distance": comparison.phash_distance,
        "pdq_distance": comparison.pdq_distance,
        "sha256_equal": comparison.sha256_equal,
        "bytes_identical": comparison.bytes_identical,
        "hashes_inconsistent": comparison.inconsistent,
        "reference_source": _source(comparison.reference_hashed_by_server),
        "image_sha256": candidate.sha256 or "",
        "image_phash": hashbits.phash_to_hex(candidate.phash),
        "image_pdq": hashbits.pdq_to_hex(candidate.pdq) if candidate.pdq is not None else "",
        "image_pdq_quality": candidate.pdq_quality,
    }
    if comparison.inconsistent:
        evidence["detail"] = INCONSISTENT_DETAIL
    return evidence


INCONSISTENT_DETAIL = (
    "A reference gives this picture's sha256, but its perceptual hashes are far from the picture's: "
    "these hashes can't come from one picture. Not counted as a match."
)
INCOMPARABLE = "The reference signals were made by another version of the hashing and cannot be compared."
SHA256_ONLY_DETAIL = (
    "Only the sha256 of this row's picture is known (from the dataset file, never hashed by us), and it "
    "equals a reference's: not enough to count as strong."
)


def _compare(pictures: list[list[imaging.Variant]], candidates: list[imaging.Variant]) -> "imaging.Comparison":
    return imaging.best_match(
        pictures,
        candidates,
        phash_threshold=settings.OPTOUT_PHASH_THRESHOLD,
        pdq_threshold=settings.OPTOUT_PDQ_THRESHOLD,
        pdq_review=settings.OPTOUT_PDQ_REVIEW_THRESHOLD,
    )


def _as_row(signals: imaging.ImageSignals) -> list[imaging.Variant]:
    return [imaging.Variant(imaging.IDENTITY, signals)]


def _indexed_row(item: RemovalItem, removal: RemovalRequest) -> DatasetRow | None:
    rows = DatasetRow.objects.filter(url_sha256=item.url_sha256).exclude(phash=None)
    if removal.dataset_id:
        rows = rows.filter(dataset_id=removal.dataset_id)
    return rows.order_by("id").first()


def verify_item(item: RemovalItem, removal: RemovalRequest, references: list[list[imaging.Variant]]) -> bool:
    """Give the item its verdict. False when a transient failure leaves it pending for another attempt.

    Attempts are counted before the work starts, so an item whose verification
    kills the worker (or hangs past the time limit) is given up on after
    OPTOUT_VERIFY_MAX_ATTEMPTS instead of looping forever.
    """
    attempt = services.count_verify_attempt(item)
    last_attempt = attempt >= settings.OPTOUT_VERIFY_MAX_ATTEMPTS
    if attempt > settings.OPTOUT_VERIFY_MAX_ATTEMPTS:
        services.record_item_verdict(
            item, state=ItemState.UNREACHABLE, detail=f"Verification did not finish in {attempt - 1} attempts."
        )
        return True
    row = _indexed_row(item, removal)
    stored = row_signals(row) if row else None
    if row:
        RemovalItem.objects.filter(pk=item.pk).update(dataset_row=row)
    if stored is not None:
        comparison = _compare(references, _as_row(stored))
        if comparison.strength is not None or comparison.inconsistent:
            services.record_item_verdict(
                item, state=_STRENGTH_TO_STATE[comparison.strength], **_evidence(comparison, stored)
            )
            return True
    # Not indexed, or its stored signals do not match: the picture at the address, expanded.
    try:
        candidates = imaging.candidate_variants(hashing.fetch_decoded(item.url))
    except (fetch.FetchError, imaging.ImageRejected) as exc:
        if stored is not None:
            # The live picture was a second chance; the index's copy is what the item is judged on.
            comparison = _compare(references, _as_row(stored))
            services.record_item_verdict(item, state=ItemState.NO_MATCH, **_evidence(comparison, stored))
            return True
        if isinstance(exc, imaging.ImageRejected):
            services.record_item_verdict(item, state=ItemState.NOT_AN_IMAGE, detail=exc.message[:200])
            return True
        if exc.code == ItemState.UNREACHABLE and not last_attempt:
            return False  # perhaps a passing outage: try again later
        services.record_item_verdict(item, state=exc.code, detail=exc.message[:200])
        return True
    comparison = _compare(references, candidates)
    services.record_item_verdict(
        item, state=_STRENGTH_TO_STATE[comparison.strength], **_evidence(comparison, candidates[0].signals)
    )
    return True


def find_other_copies(removal: RemovalRequest, references: list[list[imaging.Variant]]) -> int:
    """Attach index rows near any reference variant as items "found by the system". Returns how many were added.

    Such items are never blocked by "approve" alone (see services.items_to_block), and a row known by its
    sha256 alone is at most a weak match. A row whose hashes conflict with a reference that claims its bytes
    is attached too, flagged, so the reviewer sees the conflict.
    """
    dataset_id = removal.dataset_id
    signal_sets = [variant.signals for picture in references for variant in picture]
    later = removal.reopened_at is not None  # links added to a decided case: what it finds is new to it
    # Byte-identical copies first (the sha256 index), then perceptual neighbours (the matcher).
    same_bytes = DatasetRow.objects.filter(sha256__in=[signals.sha256 for signals in signal_sets if signals.sha256])
    if dataset_id:
        same_bytes = same_bytes.filter(dataset_id=dataset_id)
    row_ids: set[int] = set(same_bytes.values_list("id", flat=True))
    for reference in signal_sets:
        row_ids.update(
            match.row_id
            for match in matcher.phash_neighbours(
                reference.phash, settings.OPTOUT_PHASH_THRESHOLD, dataset_id=dataset_id
            )
        )
        if reference.pdq is not None:
            row_ids.update(
                match.row_id
                for match in matcher.pdq_neighbours(reference.pdq, settings.OPTOUT_PDQ_THRESHOLD, dataset_id=dataset_id)
            )
    added = 0
    for row in DatasetRow.objects.filter(pk__in=row_ids).order_by("id"):
        verdict = found_copy_verdict(references, row)
        if verdict is not None:
            state, evidence = verdict
            added += services.add_found_item(removal, row, state=state, later=later, **evidence)
    return added


def found_copy_verdict(references: list[list[imaging.Variant]], row: DatasetRow) -> tuple[str, dict] | None:
    """The verdict and evidence of an index row found near the references, or None when it is no copy.

    The one rule for copies the system finds, at verification and by monitoring."""
    candidate = row_signals(row)
    if candidate is None:  # only its bytes' sha256 is known: at most weak, if it equals a reference's
        signal_sets = [variant.signals for picture in references for variant in picture]
        claimed_by = next((s for s in signal_sets if row.sha256 and s.sha256 == row.sha256), None)
        if claimed_by is None:
            return None
        return ItemState.MATCH_WEAK, {
            "sha256_equal": True,
            "image_sha256": row.sha256,
            "reference_source": _source(claimed_by.hashed_by_server),
            "detail": SHA256_ONLY_DETAIL,
        }
    comparison = _compare(references, _as_row(candidate))
    if comparison.strength is None and not comparison.inconsistent:
        return None
    return _STRENGTH_TO_STATE[comparison.strength], _evidence(comparison, candidate)


def run_verification(removal_id: int) -> bool:
    """Verify every pending item of a request and move it to review. A no-op once that is done.

    Returns False when an item is left pending after a transient failure: the
    caller should try again later (the task retries with backoff; the sweeper
    catches anything the retries miss).
    """
    removal = RemovalRequest.objects.filter(pk=removal_id).first()
    if removal is None:
        return True
    if removal.state == RemovalState.RECEIVED:
        try:
            services.start_checking(removal)
        except TransitionError:  # a duplicate delivery got there first: carry on in step with it
            removal.refresh_from_db()
    if removal.state != RemovalState.CHECKING:
        return True
    references = reference_signals(removal)
    if not references:
        if not removal.references.exists():  # withdrawn a moment ago: its reference signals are gone already
            return True
        for item in removal.items.filter(state=ItemState.PENDING):  # stored under another descriptor only
            services.record_item_verdict(item, state=ItemState.NO_MATCH, detail=INCOMPARABLE)
    done = [
        verify_item(item, removal, references) for item in removal.items.filter(state=ItemState.PENDING).order_by("id")
    ]
    if not all(done):
        return False
    if references:
        find_other_copies(removal, references)
    try:
        services.finish_checking(removal)
    except TransitionError:
        log.info("request %s left checking meanwhile (withdrawn, or a duplicate run finished it)", removal_id)
    return True
