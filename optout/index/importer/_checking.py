"""Checking a batch: URL and hash columns validated and converted, vectorised with Arrow and numpy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.client.canonical import BadURL, url_sha256
from optout.client.hexes import unhexlify_column
from optout.index.importer._summary import (  # noqa: F401
    _REASONS,
    BAD_PDQ,
    BAD_PDQ_QUALITY,
    BAD_PHASH,
    BAD_SHA256,
    BAD_URL,
    MAX_EXAMPLES,
    MIN_PDQ_QUALITY,
    MISSING_URL,
    NOT_HTTP,
    PDQ,
    PDQ_QUALITY,
    PHASH,
    SHA256,
    URL,
    URL_TOO_LONG,
    ImportSummary,
    _shorten,
)
from optout.models import MAX_ROW_URL_LENGTH

# --- Checking -------------------------------------------------------------------------------------------


def _as_text(array: pa.Array) -> pa.Array:
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    return pc.utf8_trim_whitespace(array)


def _present(text: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.greater(pc.utf8_length(text), 0), False).to_numpy(zero_copy_only=False)


def _hex_check(text: pa.Array, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """(present, malformed) masks of a column of hex strings."""
    present = _present(text)
    valid = pc.fill_null(pc.match_substring_regex(text, f"^[0-9a-fA-F]{{{digits}}}$"), False).to_numpy(
        zero_copy_only=False
    )
    return present & valid, present & ~valid


def _hex_words(text: pa.Array, valid: np.ndarray, words: int) -> list[pa.Array]:
    """Signed 64-bit words (most significant first) of hex strings of ``16 * words`` digits; null where not valid."""
    width = 16 * words
    filled = pc.if_else(pa.array(valid), text, pa.scalar("0" * width))
    values = unhexlify_column(filled, width).view(">i8").astype(np.int64)
    mask = ~valid
    return [pa.array(values[:, i], type=pa.int64(), mask=mask) for i in range(words)]


def _quality(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(present, malformed, value) of a PDQ quality column, integer or text."""
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        present = pc.is_valid(array).to_numpy(zero_copy_only=False)
        numbers = pc.fill_null(pc.cast(array, pa.float64()), -1.0).to_numpy(zero_copy_only=False)
    else:
        text = _as_text(array)
        present = _present(text)
        ok = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{1,3}(\.0*)?$"), False)
        numbers = pc.cast(pc.if_else(ok, text, pa.scalar("-1")), pa.float64()).to_numpy(zero_copy_only=False)
    valid = (numbers >= 0) & (numbers <= 100) & (numbers == np.floor(numbers))
    return present & valid, present & ~valid, np.where(valid, numbers, 0).astype(np.int16)


def _prepare(
    batch: pa.RecordBatch,
    first_row: int,
    numbers: np.ndarray | None,
    descriptor_id: int | None,
    summary: ImportSummary,
    path: str,
) -> pa.Table | None:
    """Check a role-named batch; record its bad rows in ``summary``; return its good rows in the staging layout."""
    n = batch.num_rows
    if not n:
        return None
    reason = np.zeros(n, dtype=np.int8)  # index into _REASONS; 0 means good so far

    def flag(mask: np.ndarray, why: str) -> None:
        reason[(reason == 0) & mask] = _REASONS.index(why)

    url = _as_text(batch.column(URL))
    flag(~_present(url), MISSING_URL)
    flag(
        pc.fill_null(pc.greater(pc.utf8_length(url), MAX_ROW_URL_LENGTH), False).to_numpy(zero_copy_only=False),
        URL_TOO_LONG,
    )
    http = pc.fill_null(pc.match_substring_regex(url, "^https?://", ignore_case=True), False)
    flag(~http.to_numpy(zero_copy_only=False), NOT_HTTP)

    names = batch.schema.names
    out: dict[str, pa.Array] = {}
    has_hash = np.zeros(n, dtype=bool)
    if PHASH in names:
        text = _as_text(batch.column(PHASH))
        valid, bad = _hex_check(text, 16)
        flag(bad, BAD_PHASH)
        out["phash"] = _hex_words(text, valid, 1)[0]
        has_hash |= valid
    if PDQ in names:
        text = _as_text(batch.column(PDQ))
        valid, bad = _hex_check(text, 64)
        flag(bad, BAD_PDQ)
        if PDQ_QUALITY in names:
            q_present, q_bad, q_value = _quality(batch.column(PDQ_QUALITY))
            flag(valid & q_bad, BAD_PDQ_QUALITY)
            keep = valid & q_present & (q_value >= MIN_PDQ_QUALITY)
            out["pdq_quality"] = pa.array(q_value, type=pa.int16(), mask=~keep)
        else:  # no quality column: the hash is kept, its quality unknown (see the package docstring)
            keep = valid
        for i, word in enumerate(_hex_words(text, keep, 4)):
            out[f"pdq_{i}"] = word
        has_hash |= keep
    if SHA256 in names:
        text = _as_text(batch.column(SHA256))
        valid, bad = _hex_check(text, 64)
        flag(bad, BAD_SHA256)
        out["sha256"] = pc.if_else(pa.array(valid), pc.utf8_lower(text), pa.scalar(None, pa.string()))
        has_hash |= valid

    # Canonicalisation is the one per-row Python step: only for rows that passed every vectorised check.
    candidates = np.flatnonzero(reason == 0)
    digests = []
    if len(candidates):
        bad_url = _REASONS.index(BAD_URL)
        for index, text in zip(candidates, url.take(pa.array(candidates)).to_pylist(), strict=True):
            try:
                digests.append(url_sha256(text))
            except BadURL:
                reason[index] = bad_url

    bad_rows = np.flatnonzero(reason)
    if len(bad_rows):
        counts = np.bincount(reason[bad_rows], minlength=len(_REASONS))
        for code in np.flatnonzero(counts):
            summary.bad[_REASONS[code]] += int(counts[code])
        raw_url = batch.column(URL)
        for index in bad_rows[: max(MAX_EXAMPLES - len(summary.examples), 0)]:
            number = first_row + index + 1 if numbers is None else numbers[index]
            summary.add_example(path, f"row {number}", _REASONS[reason[index]], raw_url[index].as_py())

    good = reason == 0
    if not good.any():
        return None
    keep = pa.array(good)
    columns = {"url": pc.filter(url, keep), "url_sha256": pa.array(digests, pa.string())}
    for name in ("sha256", "phash", "pdq_0", "pdq_1", "pdq_2", "pdq_3", "pdq_quality"):
        if name in out:
            columns[name] = pc.filter(out[name], keep)
    if descriptor_id is not None:
        columns["descriptor_id"] = pc.filter(pa.array(np.full(n, descriptor_id, dtype=np.int64), mask=~has_hash), keep)
    # In key order, the unique index and the url_sha256 index are walked left to right instead of at random
    # (about a third faster on PostgreSQL), and concurrent imports take their row locks in one order.
    return pa.table(columns).sort_by("url_sha256")
