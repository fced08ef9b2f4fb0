"""The filter's core: which rows of an Arrow record batch a verified release blocks.

``Rules`` is built once from a loaded, verified ``state.Blocklist`` and is then a
pure function of a batch: ``rules.keep(batch, columns)`` returns the keep mask
and the rule that dropped each other row; ``rules.filter(batch, columns)`` the
kept rows. It carries the sha256 of the manifest it was built from
(``rules.release``), so that distributed workers can check that they apply the
release the driver verified (``require_release``). The command line, Spark and
Hugging Face ``datasets`` all go through it.

Speed. URLs that are already canonical (the common case in real URL lists) are
found by one vectorised regular expression over the whole column and hashed as
they are, by one compiled loop over the column once a process has hashed enough
rows (``digests``: OpenSSL's SHA-256 without a Python call per row); only the
others go through the per-row canonicaliser. Lookups are
binary searches in the sorted digests (numpy), not Python sets. ``reference_keep``
is the plain per-row definition the fast path must equal, row for row (a
property test holds them together, and the bench compares their speed).

Rules, in order (the first that applies names the row's reason): ``bad_url``
(not a plausible web URL: fail closed, the row cannot be judged), ``url``,
``sha256`` (image bytes), ``phash`` and ``pdq`` (partner data, within the given
Hamming distance, see ``nearby``).

Decoys. The public tier hides each real URL key among decoys, and a public-only
client cannot tell them apart: its URL drops are all ``url``. A partner may hold
the exact partner tier of the same release beside it (``exact=``): a row the
public tier drops by a URL key that the partner tier does not hold, and that no
other rule drops, is then ``decoy`` (dropped all the same: the rules are the
public tier's), so the partner sees what the decoys cost.
"""

import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.client import nearby
from optout.client.canonical import AS_IS, BadURL, web_url
from optout.client.digests import column_sha256
from optout.client.hexes import unhexlify_column
from optout.client.state import Blocklist

REASONS = ("bad_url", "url", "sha256", "phash", "pdq", "decoy")
KEPT = -1

_AS_IS = f"^{AS_IS}$"  # for RE2 (pyarrow), which has no fullmatch
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_SPACE = " \t\r\n"


class WrongRelease(Exception):
    """A worker holds another release than the one it was told to apply."""


@dataclass(frozen=True)
class Columns:
    """Which columns of the batch hold what (None: not checked)."""

    url: str = "url"
    sha256: str | None = None
    phash: str | None = None
    pdq: str | None = None


class DigestSet:
    """Sorted, unique 32-byte digests, answering membership for many digests at once."""

    def __init__(self, raw: bytes):
        self.words = np.frombuffer(raw, dtype=">u8").reshape(-1, 4)
        self.first = self.words[:, 0].astype(np.uint64)
        # Keys sharing their first 64 bits: rare by chance, but a crafted key could collide on purpose.
        self.shared = np.zeros(len(self.first), dtype=bool)
        self.shared[1:] = self.first[1:] == self.first[:-1]
        self.shared[:-1] |= self.shared[1:]
        # A bitmap of the digests' leading bits, about 64 bits per digest: most rows of a dataset are not
        # blocked, and one bit read turns nearly all of them away before the binary search.
        self.prefix_bits = min(32, max(10, len(self.first).bit_length() + 6))
        self.shift = np.uint64(64 - self.prefix_bits)
        self.bitmap = np.zeros(1 << (self.prefix_bits - 3), dtype=np.uint8)
        prefixes = (self.first >> self.shift).astype(np.intp)
        np.bitwise_or.at(self.bitmap, prefixes >> 3, (1 << (prefixes & 7)).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, digest: bytes) -> bool:
        return bool(self.contains(np.frombuffer(digest, dtype=">u8").reshape(1, 4))[0])

    def contains(self, digests: np.ndarray) -> np.ndarray:
        """For an (n, 4) array of big-endian words, whether each digest is in the set."""
        found = np.zeros(len(digests), dtype=bool)
        if not len(self.words) or not len(digests):
            return found
        prefixes = (digests[:, 0] >> self.shift).astype(np.intp)
        rows = np.flatnonzero((self.bitmap[prefixes >> 3] >> (prefixes & 7).astype(np.uint8)) & 1)
        first = digests[rows, 0].astype(np.uint64)
        low = np.minimum(np.searchsorted(self.first, first, "left"), len(self.first) - 1)
        hit = (self.words[low] == digests[rows]).all(axis=1)
        found[rows[hit]] = True
        for at in np.flatnonzero(self.shared[low] & (self.first[low] == first) & ~hit):
            high = np.searchsorted(self.first, first[at], "right")
            found[rows[at]] = bool((self.words[low[at] : high] == digests[rows[at]]).all(axis=1).any())
        return found


class Rules:
    """The filter of one verified release (see the module docstring)."""

    def __init__(
        self,
        blocklist: Blocklist,
        *,
        max_distance: int | None = None,
        max_pdq_distance: int | None = None,
        exact: Blocklist | None = None,
        threads: int | None = None,
    ):
        """``exact``: the partner tier of the same release as ``blocklist`` (the public tier), to tell decoy drops
        apart (the caller checks that they match: ``state.require_partner``). ``threads``: for the near-duplicate
        lookups (``nearby``; default one per available CPU)."""
        self.release = blocklist.current.manifest_sha256
        self.exact_release = exact.current.manifest_sha256 if exact is not None else None
        self.exact_urls = DigestSet(exact.url_bytes) if exact is not None else None
        self.version = blocklist.current.version
        self.urls = DigestSet(blocklist.url_bytes)
        self.sha256s = DigestSet(blocklist.sha256_bytes)
        self.max_distance = max_distance
        self.max_pdq_distance = max_pdq_distance
        self.phashes = self.pdqs = None
        if max_distance is not None:
            self.phashes = nearby.PHashIndex(blocklist.phashes(), max_distance, threads=threads)
        if max_pdq_distance is not None:
            self.pdqs = nearby.PDQIndex(blocklist.pdqs(), max_pdq_distance, threads=threads)

    def require_release(self, release: str, exact_release: str | None = None) -> None:
        """Raise ``WrongRelease`` unless these rules are those of the manifest with sha256 ``release`` (and their
        partner tier that of ``exact_release``, or none when it is None)."""
        if release != self.release:
            raise WrongRelease(
                f"this worker holds the release whose manifest sha256 is {self.release} (version {self.version}), "
                f"not {release}: refusing to filter with another blocklist than the one verified"
            )
        if exact_release != self.exact_release:
            raise WrongRelease(
                f"this worker holds the partner tier whose manifest sha256 is {self.exact_release}, not "
                f"{exact_release}: refusing to count decoys against another partner tier than the one verified"
            )

    def filter(self, batch: pa.RecordBatch, columns: Columns, *, near: dict | None = None) -> pa.RecordBatch:
        return batch.filter(pa.array(self.keep(batch, columns, near=near)[0] == KEPT))

    def keep(
        self, batch: pa.RecordBatch, columns: Columns, *, near: dict | Future | None = None
    ) -> tuple[np.ndarray, None]:
        """(reason per row: an index into ``REASONS``, or ``KEPT``; None).

        The near-duplicate lookups (compiled, without the GIL) run on a thread of their own while this one hashes
        the URLs (which holds it), over every row that has a hash; a row dropped for its URL or sha256 keeps
        that reason, as if it had never been looked up. ``near``: their answers for these rows already, as
        ``near_of`` gives them (``near``, with the rows of other files), or a future of them started before the
        other columns were read; then none is looked up here."""
        if near is not None or not self._indexes(columns):
            return self._judge(batch, columns, near)
        with ThreadPoolExecutor(1) as pool:
            return self._judge(batch, columns, pool.submit(self.near_of, batch, columns))

    def near_of(self, batch: pa.RecordBatch | pa.Table, columns: Columns) -> dict[int, np.ndarray]:
        """``near`` of one batch."""
        return self.near([batch], columns)[0]

    def near(self, tables: list, columns: Columns) -> list[dict[int, np.ndarray]]:
        """For each of ``tables`` (record batches or tables with at least the hash columns), {reason: which of its
        rows are near a blocked hash}, for ``keep(near=...)``: one lookup per index for the rows of them all.

        Small files cost less looked up together: a lookup sorts its queries and sweeps the tables of the blocked
        hashes, a fixed cost (about 0.3 s for pHash at a million blocked hashes) that a few thousand rows do not
        pay back. The tables may spell a hash column differently (hex in one, int64 in another)."""
        indexes = self._indexes(columns)
        answers = [{} for _ in tables]
        if not tables or not indexes:
            return answers
        with ThreadPoolExecutor(len(indexes)) as pool:
            started = []
            for code, name, index, values_of in indexes:
                given = [values_of(table.column(name)) for table in tables]  # (values, which rows have one)
                queries = np.concatenate([values[has] for values, has in given])
                started.append((code, given, pool.submit(index.near, queries)))
            for code, given, lookup in started:
                found, first = lookup.result(), 0
                for (_, has), answer in zip(given, answers, strict=True):
                    answer[code] = np.zeros(len(has), dtype=bool)
                    rows = np.flatnonzero(has)
                    answer[code][rows[found[first : first + len(rows)]]] = True
                    first += len(rows)
        return answers

    def hash_columns(self, columns: Columns) -> list[str]:
        """The columns the near-duplicate lookups of these rules read, with these columns."""
        return [name for _, name, _, _ in self._indexes(columns)]

    def _indexes(self, columns: Columns) -> list:
        """[(reason, column, index, the column's values and which rows have one)] of the near-duplicate lookups
        these rules make with these columns, pHash's before PDQ's."""
        candidates = ((3, columns.phash, self.phashes, phash_values), (4, columns.pdq, self.pdqs, hex_digests))
        return [candidate for candidate in candidates if candidate[1] is not None and candidate[2] is not None]

    def _judge(self, batch: pa.RecordBatch, columns: Columns, near: dict | Future | None) -> tuple[np.ndarray, None]:
        rows = batch.num_rows
        reason = np.full(rows, KEPT, dtype=np.int8)
        digests, bad = url_digests(batch.column(columns.url))
        reason[bad] = 0
        open_ = reason == KEPT
        by_url = open_ & self.urls.contains(digests)
        decoy = None
        if self.exact_urls is not None:  # asked of the partner tier only for the rows the public tier drops
            dropped = np.flatnonzero(by_url)
            decoy = np.zeros(rows, dtype=bool)
            decoy[dropped[~self.exact_urls.contains(digests[dropped])]] = True
        reason[by_url if decoy is None else by_url & ~decoy] = 1
        if columns.sha256 is not None:
            images, given = sha256_digests(batch.column(columns.sha256))
            open_ = (reason == KEPT) & given
            reason[open_ & self.sha256s.contains(images)] = 2
        answers = near.result() if isinstance(near, Future) else near or {}  # last: the lookups ran meanwhile
        for code in sorted(answers):  # pHash's before PDQ's
            found = np.flatnonzero(answers[code])
            reason[found[reason[found] == KEPT]] = code
        if decoy is not None:
            reason[decoy & (reason == KEPT)] = 5
        return reason, None


# --- Columns to numbers -------------------------------------------------------------------------------


def _strings(column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_large_string(column.type) or pa.types.is_string_view(column.type):
        column = column.cast(pa.string())
    if pa.types.is_null(column.type):
        column = column.cast(pa.string())
    return column


def url_digests(column) -> tuple[np.ndarray, np.ndarray]:
    """(the url_sha256 of each row as an (n, 4) array of big-endian words, which rows are not plausible URLs).

    The digest of a row that is not a plausible URL means nothing (it is the sha256 of nothing).
    """
    column = _strings(column)
    rows = len(column)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        digests = np.empty((rows, 32), dtype=np.uint8)
        slow_rows, slow_values = np.arange(rows), [value or "" for value in column.to_pylist()]
    else:
        column = column.fill_null("")
        as_is = pc.match_substring_regex(column, _AS_IS).to_numpy(zero_copy_only=False)
        digests = column_sha256(column.cast(pa.binary()))  # the other rows' are replaced below
        slow_rows = np.flatnonzero(~as_is)
        slow_values = column.take(pa.array(slow_rows)).to_pylist() if len(slow_rows) else []
    bad = np.zeros(rows, dtype=bool)
    canonical = []
    for index, value in zip(slow_rows, slow_values, strict=True):
        try:
            canonical.append(web_url(value).encode("ascii"))
        except BadURL:
            canonical.append(b"")
            bad[index] = True
    if len(slow_rows):
        digests[slow_rows] = column_sha256(pa.array(canonical, pa.binary()))
    return digests.view(">u8").reshape(rows, 4), bad


def _decode_hex(column: pa.Array, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """(bytes of each row's hex value as an (n, digits // 2) uint8 array, which rows hold exactly that).

    A value may sit between spaces, so the definition is "trimmed, it matches ``[0-9a-fA-F]{digits}``". But a
    regular expression over every row costs more than the rest of the column's work: rows of exactly ``digits``
    bytes are decoded by one ``unhexlify`` over them all (which fails on any other character, so success proves
    every one of them hex), shorter rows can never hold a value, and only longer rows (and all of them, should
    that ``unhexlify`` fail) are trimmed and matched.
    """
    rows = len(column)
    out = np.zeros((rows, digits // 2), dtype=np.uint8)
    given = np.zeros(rows, dtype=bool)
    lengths = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    exact = lengths == digits
    check = lengths > digits
    if exact.any():
        try:
            out[exact] = unhexlify_column(column.filter(pa.array(exact)), digits)
            given |= exact
        except ValueError:
            check |= exact
    if check.any():
        at = np.flatnonzero(check)
        trimmed = pc.utf8_trim(column.take(pa.array(at)), _SPACE)
        hexes = pc.match_substring_regex(trimmed, f"^[0-9a-fA-F]{{{digits}}}$").to_numpy(zero_copy_only=False)
        if hexes.any():
            out[at[hexes]] = unhexlify_column(trimmed.filter(pa.array(hexes)), digits)
            given[at[hexes]] = True
    return out, given


def sha256_digests(column) -> tuple[np.ndarray, np.ndarray]:
    """(each row's image sha256 as (n, 4) big-endian words, which rows give one): 64 hex digits or 32 bytes."""
    column = _strings(column)
    rows = len(column)
    if pa.types.is_fixed_size_binary(column.type) or pa.types.is_binary(column.type):
        raw = np.zeros((rows, 32), dtype=np.uint8)
        values = column.to_pylist()
        given = np.array([isinstance(v, bytes) and len(v) == 32 for v in values], dtype=bool)
        for index in np.flatnonzero(given):
            raw[index] = np.frombuffer(values[index], dtype=np.uint8)
        return raw.view(">u8").reshape(rows, 4), given
    if not pa.types.is_string(column.type):
        return np.zeros((rows, 4), dtype=">u8"), np.zeros(rows, dtype=bool)
    raw, given = _decode_hex(column, 64)
    return raw.view(">u8").reshape(rows, 4), given


def hex_digests(column) -> tuple[np.ndarray, np.ndarray]:
    """(each row's 256-bit hash from 64 hex digits as (n, 4) big-endian words, which rows give one)."""
    return sha256_digests(column)


def phash_values(column) -> tuple[np.ndarray, np.ndarray]:
    """(each row's pHash as uint64, which rows give one): 16 hex digits, or an int64/uint64 column."""
    column = _strings(column)
    rows = len(column)
    if pa.types.is_integer(column.type):
        given = pc.is_valid(column).to_numpy(zero_copy_only=False)
        values = column.fill_null(0).cast(pa.int64() if pa.types.is_signed_integer(column.type) else pa.uint64())
        return values.to_numpy().view(np.uint64), given
    if not pa.types.is_string(column.type):
        return np.zeros(rows, dtype=np.uint64), np.zeros(rows, dtype=bool)
    raw, given = _decode_hex(column, 16)
    return raw.view(">u8").reshape(rows).astype(np.uint64), given


# --- The per-row reference ----------------------------------------------------------------------------


def reference_keep(
    blocklist: Blocklist,
    batch: pa.RecordBatch,
    columns: Columns,
    *,
    max_distance=None,
    max_pdq_distance=None,
    exact: Blocklist | None = None,
) -> np.ndarray:
    """The rules of the module docstring, one row at a time in plain Python: what ``Rules.keep`` must equal."""
    urls = {blocklist.url_bytes[i : i + 32] for i in range(0, len(blocklist.url_bytes), 32)}
    real = {exact.url_bytes[i : i + 32] for i in range(0, len(exact.url_bytes), 32)} if exact is not None else None
    images = {blocklist.sha256_bytes[i : i + 32] for i in range(0, len(blocklist.sha256_bytes), 32)}
    phashes = [int(value) for value in blocklist.phashes()]
    pdqs = [int.from_bytes(blocklist.pdq_bytes[i : i + 32], "big") for i in range(0, len(blocklist.pdq_bytes), 32)]
    data = {
        name: batch.column(name).to_pylist()
        for name in {columns.url, columns.sha256, columns.phash, columns.pdq}
        if name
    }
    out = np.full(batch.num_rows, KEPT, dtype=np.int8)
    for row in range(batch.num_rows):
        url = data[columns.url][row]
        try:
            digest = hashlib.sha256(web_url(url if url is not None else "").encode("ascii")).digest()
        except BadURL:
            out[row] = 0
            continue
        if digest in urls:
            if real is None or digest in real:
                out[row] = 1
                continue
            out[row] = 5  # a decoy key alone, unless a rule below drops the row too
        if columns.sha256 is not None:
            image = _reference_sha256(data[columns.sha256][row])
            if image is not None and image in images:
                out[row] = 2
                continue
        if columns.phash is not None and max_distance is not None:
            value = data[columns.phash][row]
            if isinstance(value, int):
                value &= (1 << 64) - 1
            elif isinstance(value, str) and _HEX16.fullmatch(value.strip(_SPACE)):
                value = int(value.strip(_SPACE), 16)
            else:
                value = None
            if value is not None and any((value ^ other).bit_count() <= max_distance for other in phashes):
                out[row] = 3
                continue
        if columns.pdq is not None and max_pdq_distance is not None:
            value = data[columns.pdq][row]
            if isinstance(value, str) and _HEX64.fullmatch(value.strip(_SPACE)):
                number = int(value.strip(_SPACE), 16)
                if any((number ^ other).bit_count() <= max_pdq_distance for other in pdqs):
                    out[row] = 4
    return out


def _reference_sha256(value) -> bytes | None:
    if isinstance(value, bytes) and len(value) == 32:
        return value
    if isinstance(value, str) and _HEX64.fullmatch(value.strip(_SPACE)):
        return bytes.fromhex(value.strip(_SPACE))
    return None
