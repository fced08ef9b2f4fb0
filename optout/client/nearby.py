"""Near-duplicate lookups: which query hashes lie within a Hamming distance of a blocked one.

Exact (the same answer as a linear scan, which a property test checks) and
sublinear, by multi-index hashing (Norouzi et al., with the generalised
pigeonhole principle): the hash is cut into ``m`` chunks and chunk ``i`` gets a
radius ``t_i`` with ``sum(t_i + 1) = r + 1``. Two hashes within distance ``r``
then agree within ``t_i`` on at least one chunk ``i`` (if every chunk differed
by more, the whole would differ by at least ``r + 1``). So for each chunk we
enumerate the values within ``t_i`` of the query's chunk, look them up in a
table of the blocked hashes sorted by that chunk (a direct-address offsets
array), and verify each candidate's full distance. The chunks need not cover
every bit (distances over disjoint chunks still add up to at most the whole). The cut is chosen for the
number of blocked hashes, trading probes against candidates.

All work is vectorised with numpy over blocks of queries; memory stays bounded
by ``_PAIRS_PER_STEP`` probes or candidates at a time.
"""

import itertools
from math import comb

import numpy as np

_MAX_CHUNK_BITS = 22  # a direct-address table of 2**22 int32 offsets is 16 MB
_PAIRS_PER_STEP = 1 << 22
_PROBE_COST = 1


def _ball(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


def _masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit value of popcount at most ``radius``."""
    out = [0]
    for k in range(1, radius + 1):
        out.extend(sum(1 << b for b in chosen) for chosen in itertools.combinations(range(bits), k))
    return np.array(out, dtype=np.uint64)


def _plan(total_bits: int, radius: int, entries: int) -> list[tuple[int, int, int]]:
    """The cheapest cut: [(first bit, width, chunk radius)], by probes plus expected candidates per query."""
    best = None
    widest = min(_MAX_CHUNK_BITS, max(8, entries.bit_length() + 1))  # tables wider than the entries only cost memory
    # The chunks need not cover every bit: distances only add up, so the argument holds on any disjoint chunks.
    for chunks in range(1, min(radius + 1, total_bits) + 1):
        widths = [min(widest, total_bits // chunks + (1 if i < total_bits % chunks else 0)) for i in range(chunks)]
        spare = radius + 1 - chunks  # radii t_i sum to this
        radii = [spare // chunks + (1 if i < spare % chunks else 0) for i in range(chunks)]
        # Measured on numpy: verifying candidates, not probing, is what costs; so few candidates win.
        cost = sum(_ball(w, t) * (_PROBE_COST + entries / (1 << w)) for w, t in zip(widths, radii, strict=True))
        if best is None or cost < best[0]:
            starts = list(itertools.accumulate([0, *widths[:-1]]))
            best = (cost, list(zip(starts, widths, radii, strict=True)))
    if best is None:
        raise ValueError(f"no multi-index cut of {total_bits} bits for radius {radius}")
    return best[1]


class _Index:
    """Multi-index hashing over hashes given as (n, words) uint64 arrays, most significant word first."""

    def __init__(self, hashes: np.ndarray, radius: int, total_bits: int):
        if radius < 0:
            raise ValueError("a distance is at least 0")
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.radius = radius
        self.total_bits = total_bits
        self.words = self.hashes.shape[1]
        self.tables = []
        if not len(self.hashes):
            return
        for start, width, chunk_radius in _plan(total_bits, radius, len(self.hashes)):
            values = self._chunk(self.hashes, start, width)
            order = np.argsort(values, kind="stable")
            offsets = np.searchsorted(values[order], np.arange((1 << width) + 1, dtype=np.uint64)).astype(np.int32)
            self.tables.append((start, width, self.hashes[order], offsets, _masks(width, chunk_radius)))

    def _chunk(self, hashes: np.ndarray, start: int, width: int) -> np.ndarray:
        """Bits [start, start + width) counted from the most significant bit, as uint64."""
        # A chunk spans at most two words.
        first_word, offset = divmod(start, 64)
        end = start + width
        last_word = (end - 1) // 64
        if first_word == last_word:
            shift = np.uint64(64 - (offset + width))
            return (hashes[:, first_word] >> shift) & np.uint64((1 << width) - 1)
        else:
            high_bits = 64 - offset
            low_bits = width - high_bits
            high = hashes[:, first_word] & np.uint64((1 << high_bits) - 1)
            low = hashes[:, last_word] >> np.uint64(64 - low_bits)
            return (high << np.uint64(low_bits)) | low

    def near(self, queries: np.ndarray) -> np.ndarray:
        """For an (n, words) array of query hashes, whether each is within the radius of a blocked hash."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, self.words)
        found = np.zeros(len(queries), dtype=bool)
        if not len(self.hashes) or not len(queries):
            return found
        for start, width, ordered, offsets, masks in self.tables:
            open_rows = np.flatnonzero(~found)
            if not len(open_rows):
                break
            step = max(1, _PAIRS_PER_STEP // len(masks))
            for first in range(0, len(open_rows), step):
                rows = open_rows[first : first + step]
                probes = (self._chunk(queries[rows], start, width)[:, None] ^ masks[None, :]).astype(np.intp).ravel()
                low = offsets[probes]
                counts = offsets[probes + 1] - low
                hit = np.flatnonzero(counts)
                if not len(hit):
                    continue
                low, counts = low[hit], counts[hit]
                owner = rows[hit // len(masks)]
                ends = np.cumsum(counts)
                total = int(ends[-1])
                # Each non-empty bucket's run of positions in ``order``, laid end to end.
                position = np.arange(total, dtype=np.intp) + np.repeat(low - (ends - counts), counts)
                owner = np.repeat(owner, counts)
                for part in range(0, total, _PAIRS_PER_STEP):
                    who = owner[part : part + _PAIRS_PER_STEP]
                    candidates = ordered[position[part : part + _PAIRS_PER_STEP]]
                    distance = np.bitwise_count(queries[who] ^ candidates).sum(axis=1)
                    found[who[distance <= self.radius]] = True
        return found


class PHashIndex(_Index):
    """Blocked 64-bit pHashes (uint64), for ``near(queries)`` within ``radius``."""

    def __init__(self, phashes: np.ndarray, radius: int):
        super().__init__(np.asarray(phashes, dtype=np.uint64).reshape(-1, 1), radius, 64)


class PDQIndex(_Index):
    """Blocked 256-bit PDQ hashes as (n, 4) big-endian words, for ``near(queries)`` within ``radius``."""

    def __init__(self, pdqs: np.ndarray, radius: int):
        super().__init__(np.asarray(pdqs).astype(np.uint64).reshape(-1, 4), radius, 256)


def linear_near(hashes: np.ndarray, queries: np.ndarray, radius: int) -> np.ndarray:
    """The same answer by a linear scan (the definition ``near`` must equal)."""
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(len(hashes), -1)
    queries = np.asarray(queries, dtype=np.uint64).reshape(len(queries), -1)
    found = np.zeros(len(queries), dtype=bool)
    for row in range(len(queries)):
        found[row] = bool(len(hashes)) and int(np.bitwise_count(hashes ^ queries[row]).sum(axis=1).min()) <= radius
    return found
