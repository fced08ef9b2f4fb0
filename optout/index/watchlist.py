"""A fixed set of perceptual hashes held in memory, matched against many rows at once.

The matcher answers "which rows are near this hash" from the database's chunk
indexes. Monitoring asks the reverse question in bulk: which rows of a batch of
new rows are near any of thousands of watched hashes. One matcher query per
watched hash would probe the index tens of millions of times for every batch;
the watched hashes, though, are few enough to index in memory, with the same
multi-index hashing turned around:

1. For every chunk of every watched hash, each value within the chunk's radius
   (``matcher.chunk_radii``, ``matcher.flip_masks``) goes into one sorted array
   per chunk, with the hash it came from.
2. A row's chunk values are looked up in those arrays (``numpy.searchsorted``),
   for a whole batch of rows at once.
3. Each candidate (row, watched hash) pair is verified by its full Hamming
   distance.

Exact: the same pairs that comparing every row with every watched hash gives
(tests/optout/index/test_watchlist.py checks it). pHash uses the matcher's three
chunks; PDQ sixteen 16-bit chunks at radius 1, which keeps the probe arrays
small (272 values per hash) while only about 0.4% of pairs become candidates.
It reads no database: the caller hands it the rows.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from optout.index.matcher import PHASH_MAX_RADIUS, chunk_radii, flip_masks
from optout.models import PHASH_CHUNKS

PDQ_MAX_RADIUS = 64  # 16 chunks at radius 3 at most; monitoring uses the matching threshold (31)


class Chunk(NamedTuple):
    word: int  # index of the 64-bit word, most significant first
    shift: int
    bits: int


PHASH_LAYOUT = tuple(Chunk(0, shift, bits) for shift, bits in PHASH_CHUNKS)
PDQ_LAYOUT = tuple(Chunk(word, shift, 16) for word in range(4) for shift in (48, 32, 16, 0))


class _FamilyIndex:
    """The probe arrays of one hash family (pHash: one word per hash, PDQ: four)."""

    def __init__(self, words: np.ndarray, layout: tuple[Chunk, ...], radius: int):
        self.words = words  # (n, k) uint64
        self.radius = radius
        self.tables: list[tuple[Chunk, np.ndarray, np.ndarray]] = []
        if not len(words):
            return
        for chunk, chunk_radius in zip(layout, chunk_radii(layout, radius), strict=True):
            if chunk_radius < 0:
                continue
            # Chunks are at most 22 bits and hashes number far below 2**31: 4 bytes per probe and owner.
            values = _chunk_values(words, chunk)
            masks = np.array(flip_masks(chunk.bits, chunk_radius), dtype=np.uint32)
            probes = (values[:, None] ^ masks[None, :]).ravel()
            owners = np.repeat(np.arange(len(words), dtype=np.int32), len(masks))
            order = np.argsort(probes, kind="stable")
            self.tables.append((chunk, probes[order], owners[order]))

    def pairs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row positions, watched positions) of every pair within the radius; unique, sorted."""
        found_rows, found_owners = [], []
        for chunk, keys, owners in self.tables:
            values = _chunk_values(rows, chunk)
            # Looked up in sorted order (neighbouring lookups touch neighbouring keys), then put back.
            order = np.argsort(values, kind="stable")
            low, counts = np.empty(len(values), dtype=np.int64), np.empty(len(values), dtype=np.int64)
            low[order] = np.searchsorted(keys, values[order], side="left")
            counts[order] = np.searchsorted(keys, values[order], side="right") - low[order]
            total = int(counts.sum())
            if not total:
                continue
            row_of = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
            # Position of each candidate in `keys`: its row's first match plus its rank among them.
            starts = np.cumsum(counts) - counts
            positions = np.arange(total, dtype=np.int64) - np.repeat(starts - low, counts)
            owner_of = owners[positions].astype(np.int64)
            distance = np.bitwise_count(rows[row_of] ^ self.words[owner_of]).sum(axis=1, dtype=np.int64)
            near = distance <= self.radius
            found_rows.append(row_of[near])
            found_owners.append(owner_of[near])
        if not found_rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        pair = np.unique(np.concatenate(found_rows) * len(self.words) + np.concatenate(found_owners))
        return pair // len(self.words), pair % len(self.words)


def _chunk_values(words: np.ndarray, chunk: Chunk) -> np.ndarray:
    shifted = words[:, chunk.word] >> np.uint64(chunk.shift)
    return (shifted & np.uint64((1 << chunk.bits) - 1)).astype(np.uint32)


def _words(values: Sequence, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Known hashes as an (n, width) uint64 array, and the positions they came from.

    A value is an int (unsigned, or signed as the database stores it) for pHash, a tuple of four signed
    or unsigned 64-bit words for PDQ, or None when unknown.
    """
    positions = [i for i, value in enumerate(values) if value is not None]
    known = [values[i] for i in positions]
    try:  # signed words, as the database stores them: reinterpreted in place
        array = np.array(known, dtype=np.int64).view(np.uint64)
    except OverflowError:  # unsigned values of 2**63 and more
        mask = (1 << 64) - 1
        masked = [value & mask for value in known] if width == 1 else [[w & mask for w in v] for v in known]
        array = np.array(masked, dtype=np.uint64)
    return array.reshape(-1, width), np.array(positions, dtype=np.int64)


class Watchlist:
    """Watched hashes, numbered by their position in the lists given; ``None`` where a family is unknown."""

    def __init__(
        self,
        *,
        phashes: Sequence[int | None],
        pdqs: Sequence[int | tuple[int, int, int, int] | None],
        phash_radius: int,
        pdq_radius: int,
    ):
        if not 0 <= phash_radius <= PHASH_MAX_RADIUS or not 0 <= pdq_radius <= PDQ_MAX_RADIUS:
            raise ValueError("radius out of range")
        self._phash, self._phash_at = _words(list(phashes), 1)
        self._pdq, self._pdq_at = _words([_pdq_words(value) for value in pdqs], 4)
        self._phash_index = _FamilyIndex(self._phash, PHASH_LAYOUT, phash_radius)
        self._pdq_index = _FamilyIndex(self._pdq, PDQ_LAYOUT, pdq_radius)

    def match(
        self, *, phashes: Sequence[int | None], pdqs: Sequence[tuple[int, int, int, int] | int | None]
    ) -> list[tuple[int, int]]:
        """Sorted (row position, watched position) pairs where pHash or PDQ is within its radius."""
        pairs: set[tuple[int, int]] = set()
        for index, at, (rows, rows_at) in (
            (self._phash_index, self._phash_at, _words(list(phashes), 1)),
            (self._pdq_index, self._pdq_at, _words([_pdq_words(value) for value in pdqs], 4)),
        ):
            if len(rows) and index.tables:
                row_positions, owner_positions = index.pairs(rows)
                pairs.update(zip(rows_at[row_positions].tolist(), at[owner_positions].tolist(), strict=True))
        return sorted(pairs)


def _pdq_words(value) -> tuple[int, int, int, int] | None:
    if value is None or isinstance(value, tuple):
        return value
    return tuple((value >> (64 * i)) & ((1 << 64) - 1) for i in reversed(range(4)))
