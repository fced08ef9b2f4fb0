"""A fixed set of perceptual hashes held in memory, matched against many rows at once.

The matcher answers "which rows are near this hash" from the database's chunk
indexes. Monitoring asks the reverse question in bulk: which rows of a batch of
new rows are near any of the watched hashes (10,000 monitored pictures with 77
variants each are 770,000 of them). One matcher query per watched hash would
probe the index tens of millions of times for every batch; the watched hashes,
though, are few enough to index in memory, by multi-index hashing (Norouzi et
al., the generalised pigeonhole principle of ``matcher.chunk_radii``):

1. Each hash is cut into chunks, at most 22 bits and within one 64-bit word;
   how many is chosen for the number of watched hashes (``_layout``: probes
   against expected candidates). For every chunk, the watched hashes are sorted
   by its value, with a direct-address table of where each value's run starts
   (and whether it has any).
2. A batch of rows is sorted by the chunk's value too, and each value within the
   chunk's radius of a row's (``matcher.flip_masks``) is looked up, one flip
   mask at a time for the whole batch: the lookups then walk the table in order
   instead of jumping about it, which is what makes them cheap.
3. Each candidate (row, watched hash) pair is verified by its full Hamming
   distance; a PDQ pair first on two other words, which throws out nearly every
   chance candidate at half the cost.

Exact: the same pairs that comparing every row with every watched hash gives
(tests/optout/index/test_watchlist.py checks it; the bench counts and times it).
It reads no database: the caller hands it the rows.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from typing import NamedTuple

import numpy as np

from optout.index.matcher import PHASH_MAX_RADIUS, chunk_radii, flip_masks

PDQ_MAX_RADIUS = 64  # monitoring uses the matching threshold (31)
_MAX_CHUNK_BITS = 22  # a direct-address table of 2**22 int32 offsets is 16 MB
# Verifying a candidate costs about four lookups of a probed value (numpy, measured with bench/monitor.py).
_CANDIDATE_COST = 4


class Chunk(NamedTuple):
    word: int  # index of the 64-bit word, most significant first
    shift: int
    bits: int


class Hashes(NamedTuple):
    """Known hashes of one family as an (n, words) uint64 array, and the positions they came from."""

    words: np.ndarray
    at: np.ndarray

    @classmethod
    def of(cls, words: np.ndarray, known: np.ndarray | None = None) -> "Hashes":
        """From an (n, words) array of unsigned or signed 64-bit words; ``known`` masks the rows to keep."""
        words = np.ascontiguousarray(words).view(np.uint64).reshape(len(words), -1)
        if known is None:
            return cls(words, np.arange(len(words), dtype=np.int64))
        at = np.flatnonzero(known)
        return cls(words[at], at)


def _ball(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


def _word_chunks(word: int, count: int) -> list[Chunk]:
    """A 64-bit word cut into ``count`` chunks, the wider ones first (from the most significant bit)."""
    widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)]
    shifts = [64 - sum(widths[: i + 1]) for i in range(count)]
    return [Chunk(word, shift, bits) for shift, bits in zip(shifts, widths, strict=True)]


def _layout(words: int, radius: int, entries: int) -> tuple[tuple[Chunk, int], ...]:
    """The cheapest cut for ``entries`` watched hashes: (chunk, radius) pairs, by lookups plus expected
    candidates per row. More watched hashes want wider chunks (fewer candidates per probed value)."""
    best = None
    for per_word in range(-(-64 // _MAX_CHUNK_BITS), 17):
        chunks = tuple(chunk for word in range(words) for chunk in _word_chunks(word, per_word))
        planned = tuple(
            (chunk, chunk_radius)
            for chunk, chunk_radius in zip(chunks, chunk_radii(chunks, radius), strict=True)
            if chunk_radius >= 0
        )
        cost = sum(
            _ball(chunk.bits, chunk_radius) * (1 + _CANDIDATE_COST * entries / (1 << chunk.bits))
            for chunk, chunk_radius in planned
        )
        if best is None or cost < best[0]:
            best = (cost, planned)
    return best[1]


def _chunk_values(column: np.ndarray, chunk: Chunk) -> np.ndarray:
    return ((column >> np.uint64(chunk.shift)) & np.uint64((1 << chunk.bits) - 1)).astype(np.intp)


@dataclass
class _Table:
    chunk: Chunk
    masks: tuple[int, ...]
    occupied: np.ndarray  # bool per chunk value: does any watched hash have it
    offsets: np.ndarray  # int32, 2**bits + 1: where each value's run starts in ``order``
    order: np.ndarray  # int32: watched hashes sorted by this chunk's value


class _FamilyIndex:
    """The tables of one hash family (pHash: one word per hash, PDQ: four)."""

    def __init__(self, words: np.ndarray, radius: int):
        self.width = words.shape[1]
        self.columns = [np.ascontiguousarray(words[:, w]) for w in range(self.width)]
        self.radius = radius
        self.tables: list[_Table] = []
        if not len(words):
            return
        for chunk, chunk_radius in _layout(self.width, radius, len(words)):
            values = _chunk_values(self.columns[chunk.word], chunk)
            counts = np.bincount(values, minlength=1 << chunk.bits)
            offsets = np.zeros(len(counts) + 1, dtype=np.int32)  # hashes number far below 2**31
            np.cumsum(counts, out=offsets[1:])
            order = np.argsort(values, kind="stable").astype(np.int32)
            self.tables.append(_Table(chunk, flip_masks(chunk.bits, chunk_radius), counts > 0, offsets, order))

    def pairs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row positions, watched positions) of every pair within the radius; unique, sorted."""
        found_rows, found_owners = [], []
        row_columns = [np.ascontiguousarray(rows[:, w]) for w in range(self.width)]
        for table in self.tables:
            values = _chunk_values(row_columns[table.chunk.word], table.chunk)
            by_value = np.argsort(values, kind="stable")
            values = values[by_value]
            columns = [np.take(column, by_value) for column in row_columns]
            for mask in table.masks:
                probes = values ^ mask  # still nearly sorted: the table is read in order
                hit = np.flatnonzero(np.take(table.occupied, probes))
                if not len(hit):
                    continue
                probes = probes[hit]
                low = np.take(table.offsets, probes)
                counts = np.take(table.offsets, probes + 1) - low
                ends = np.cumsum(counts)
                # Each hit's run of watched hashes in ``order``, laid end to end.
                positions = np.arange(int(ends[-1]), dtype=np.intp) + np.repeat(low - (ends - counts), counts)
                row_at = np.repeat(hit, counts)
                owner = np.take(table.order, positions)
                near = self._near(columns, table.chunk.word, row_at, owner)
                found_rows.append(np.take(by_value, row_at[near]))
                found_owners.append(owner[near].astype(np.int64))
        if not found_rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        watched = len(self.columns[0])
        pair = np.unique(np.concatenate(found_rows) * watched + np.concatenate(found_owners))
        return pair // watched, pair % watched

    def _near(self, columns: list[np.ndarray], chunk_word: int, row_at: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Positions of the candidates within the radius. Words other than the chunk's go first: a chance
        candidate is far on them, so after two of them (PDQ) almost none is left to finish."""
        words = [w for w in range(self.width) if w != chunk_word] + [chunk_word]
        first, rest = words[:2], words[2:]
        distance = sum(np.bitwise_count(np.take(columns[w], row_at) ^ np.take(self.columns[w], owner)) for w in first)
        near = np.flatnonzero(distance <= self.radius)
        if rest and len(near):
            row_at, owner, distance = row_at[near], owner[near], distance[near]
            for w in rest:
                distance = distance + np.bitwise_count(np.take(columns[w], row_at) ^ np.take(self.columns[w], owner))
            near = near[distance <= self.radius]
        return near


def hashes(values: Sequence, width: int) -> Hashes:
    """Known hashes from Python values: an int (unsigned, or signed as the database stores it) for pHash, a
    tuple of four signed or unsigned 64-bit words or one 256-bit int for PDQ, or None when unknown."""
    if width == 4:
        values = [_pdq_words(value) for value in values]
    positions = [i for i, value in enumerate(values) if value is not None]
    known = [values[i] for i in positions]
    try:  # signed words, as the database stores them: reinterpreted in place
        array = np.array(known, dtype=np.int64).view(np.uint64)
    except OverflowError:  # unsigned values of 2**63 and more
        mask = (1 << 64) - 1
        masked = [value & mask for value in known] if width == 1 else [[w & mask for w in v] for v in known]
        array = np.array(masked, dtype=np.uint64)
    return Hashes(array.reshape(-1, width), np.array(positions, dtype=np.int64))


class Watchlist:
    """Watched hashes, numbered by their position in the lists given; ``None`` where a family is unknown.

    Each family is a sequence of Python values (see ``hashes``) or ``Hashes`` already."""

    def __init__(self, *, phashes: Sequence | Hashes, pdqs: Sequence | Hashes, phash_radius: int, pdq_radius: int):
        if not 0 <= phash_radius <= PHASH_MAX_RADIUS or not 0 <= pdq_radius <= PDQ_MAX_RADIUS:
            raise ValueError("radius out of range")
        self._phash = _as_hashes(phashes, 1)
        self._pdq = _as_hashes(pdqs, 4)
        self._phash_index = _FamilyIndex(self._phash.words, phash_radius)
        self._pdq_index = _FamilyIndex(self._pdq.words, pdq_radius)
        self._size = 1 + max((int(family.at.max()) for family in (self._phash, self._pdq) if len(family.at)), default=0)

    def pairs(self, *, phashes: Sequence | Hashes, pdqs: Sequence | Hashes) -> tuple[np.ndarray, np.ndarray]:
        """(row positions, watched positions) where pHash or PDQ is within its radius; unique, sorted."""
        rows_found, watched_found = [], []
        for index, watched, rows in (
            (self._phash_index, self._phash, _as_hashes(phashes, 1)),
            (self._pdq_index, self._pdq, _as_hashes(pdqs, 4)),
        ):
            if len(rows.words) and index.tables:
                row_positions, owner_positions = index.pairs(rows.words)
                rows_found.append(rows.at[row_positions])
                watched_found.append(watched.at[owner_positions])
        if not rows_found:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        pair = np.unique(np.concatenate(rows_found) * self._size + np.concatenate(watched_found))
        return pair // self._size, pair % self._size

    def match(self, *, phashes: Sequence | Hashes, pdqs: Sequence | Hashes) -> list[tuple[int, int]]:
        """Sorted (row position, watched position) pairs where pHash or PDQ is within its radius."""
        rows, watched = self.pairs(phashes=phashes, pdqs=pdqs)
        return list(zip(rows.tolist(), watched.tolist(), strict=True))


def _as_hashes(values: Sequence | Hashes, width: int) -> Hashes:
    return values if isinstance(values, Hashes) else hashes(list(values), width)


def _pdq_words(value) -> tuple[int, int, int, int] | None:
    if value is None or isinstance(value, tuple):
        return value
    return tuple((value >> (64 * i)) & ((1 << 64) - 1) for i in reversed(range(4)))
