"""Near-duplicate lookups: which query hashes lie within a Hamming distance of a blocked one.

Exact (the same answer as a linear scan, which a property test checks) and
sublinear, by multi-index hashing (Norouzi et al., with the generalised
pigeonhole principle): the hash is cut into ``m`` chunks and chunk ``i`` gets a
radius ``t_i`` with ``sum(t_i + 1) = r + 1``. Two hashes within distance ``r``
then agree within ``t_i`` on at least one chunk ``i`` (if every chunk differed
by more, the whole would differ by at least ``r + 1``). The chunks need not
cover every bit (distances over disjoint chunks still add up to at most the
whole). So for each chunk we look up the values within ``t_i`` of the query's
chunk (a flip mask at a time) in a table of the blocked hashes by that chunk,
and verify each candidate's full distance. The cut is chosen for the number of
blocked hashes, trading probes against candidates.

The table of a chunk is direct-addressed: ``head[v]`` is the full hash of one
blocked hash whose chunk is ``v``. A bucket no blocked hash falls in holds
some other blocked hash instead: whatever a probe compares against is a real
blocked hash, so a match is always a true match, and every probe is the same
few array operations (no per-bucket lengths). The rarer buckets that hold more
than one hash are flagged; their other hashes are kept sorted by chunk and
verified after the masks, for the probes that hit them.

Speed comes from the memory order: queries are sorted by the chunk before the
probes, so for one flip mask the probes of neighbouring queries land on
neighbouring table rows (XOR with a constant keeps a common prefix), and the
gathers stream instead of missing the cache at every row. Work goes in blocks
of ``_BLOCK`` queries, so the temporaries stay in the CPU's cache.
"""

import itertools
from math import comb, exp

import numpy as np

_MAX_CHUNK_BITS = 22  # a direct-address table of 2**22 rows of one 64-bit word is 32 MB
_PAIRS = 1 << 22  # extra candidates verified at a time
_BLOCK = 1 << 20  # queries at a time: sorted, they probe neighbouring table rows (denser is better)
_TABLE_COST = 30  # sorting a block of queries by the chunk, per query, in probes


def _ball(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


def _masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit value of popcount at most ``radius``, in an order that keeps probes near each other."""
    out = [0]
    for k in range(1, radius + 1):
        out.extend(sum(1 << b for b in chosen) for chosen in itertools.combinations(range(bits), k))
    return np.sort(np.array(out, dtype=np.intp))


def _plan(total_bits: int, radius: int, entries: int) -> list[tuple[int, int, int]]:
    """The cheapest cut: [(first bit, width, chunk radius)], by probes and expected extra candidates per query."""
    best = None
    widest = min(_MAX_CHUNK_BITS, max(8, entries.bit_length() + 1))  # tables wider than the entries only cost memory
    for chunks in range(1, min(radius + 1, total_bits) + 1):
        widths = [min(widest, total_bits // chunks + (1 if i < total_bits % chunks else 0)) for i in range(chunks)]
        spare = radius + 1 - chunks  # radii t_i sum to this
        radii = [spare // chunks + (1 if i < spare % chunks else 0) for i in range(chunks)]
        cost = 0.0
        for width, chunk_radius in zip(widths, radii, strict=True):
            load = entries / (1 << width)
            extra = load - 1 + exp(-load)  # expected hashes beyond a bucket's first, per probe
            cost += _TABLE_COST + _ball(width, chunk_radius) * (1 + 4 * extra)
        if best is None or cost < best[0]:
            starts = list(itertools.accumulate([0, *widths[:-1]]))
            best = (cost, list(zip(starts, widths, radii, strict=True)))
    if best is None:
        raise ValueError(f"no multi-index cut of {total_bits} bits for radius {radius}")
    return best[1]


def _chunk(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits [start, start + width) of (n, words) hashes, counted from the most significant bit, as intp."""
    first_word, offset = divmod(start, 64)
    last_word = (start + width - 1) // 64
    if first_word == last_word:  # a chunk spans at most two words
        value = (hashes[:, first_word] >> np.uint64(64 - (offset + width))) & np.uint64((1 << width) - 1)
    else:
        high_bits = 64 - offset
        low_bits = width - high_bits
        high = hashes[:, first_word] & np.uint64((1 << high_bits) - 1)
        value = (high << np.uint64(low_bits)) | (hashes[:, last_word] >> np.uint64(64 - low_bits))
    return value.astype(np.intp)


class _Table:
    """One chunk's direct-address table (see the module docstring)."""

    def __init__(self, hashes: np.ndarray, start: int, width: int, radius: int, layers: int):
        self.start, self.width = start, width
        self.masks = _masks(width, radius)
        values = _chunk(hashes, start, width)
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        first = np.searchsorted(ordered, np.arange(1 << width, dtype=np.intp), "left")
        counts = np.bincount(values, minlength=1 << width)
        # The words probes compare first: for a 256-bit hash, the two words with the fewest of the chunk's bits
        # (the chunk's own bits are within the chunk radius anyway). Over 128 random bits a distance of 31 or
        # less has a chance of about 1e-8, so the other two words are read only for the few that pass.
        words = hashes.shape[1]
        inside = [max(0, min(start + width, 64 * (w + 1)) - max(start, 64 * w)) for w in range(words)]
        self.first_words = sorted(range(words), key=lambda w: (inside[w], w))[: min(2, words)]
        # Layer j holds the j-th hash of each bucket; a bucket with fewer holds its first hash, or (empty) the
        # next bucket's first: always a real blocked hash.
        self.layers = []
        for layer in range(layers):
            row = np.where(counts > layer, first + layer, first)
            head = order[np.minimum(row, len(order) - 1)].astype(np.int32)
            words_of_head = [np.ascontiguousarray(hashes[head, w]) for w in self.first_words]
            # Which hash a row holds is needed only to read its other words.
            self.layers.append((head if words > len(self.first_words) else None, words_of_head))
        # The rest of a bucket's hashes, bucket by bucket: from ``extra_offsets[v]`` to ``extra_offsets[v + 1]``;
        # ``has_extra`` is what every probe reads (a byte a bucket).
        extra = np.maximum(counts - layers, 0)
        self.has_extra = extra > 0
        self.extra_offsets = np.concatenate([[0], np.cumsum(extra)]).astype(np.int32)
        rank = np.arange(len(ordered)) - first[ordered]
        self.extra_hashes = hashes[order[rank >= layers]]
        self.extra_first = [np.ascontiguousarray(self.extra_hashes[:, w]) for w in self.first_words]


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
        if len(self.hashes):
            # A second layer where it is cheap (one word a row): a bucket's second hash compared inline, so only
            # the few buckets with three or more go the slow way.
            layers = 2 if self.words == 1 else 1
            self.tables = [
                _Table(self.hashes, start, width, chunk_radius, layers)
                for start, width, chunk_radius in _plan(total_bits, radius, len(self.hashes))
            ]

    def near(self, queries: np.ndarray) -> np.ndarray:
        """For an (n, words) array of query hashes, whether each is within the radius of a blocked hash."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, self.words)
        found = np.zeros(len(queries), dtype=bool)
        if not len(self.hashes) or not len(queries):
            return found
        for first in range(0, len(queries), _BLOCK):
            block = queries[first : first + _BLOCK]
            found[first : first + len(block)] = self._near_block(block)
        return found

    def _near_block(self, queries: np.ndarray) -> np.ndarray:
        rows = len(queries)
        found = np.zeros(rows, dtype=bool)
        probe = np.empty(rows, dtype=np.intp)
        flag = np.empty(rows, dtype=bool)
        word = np.empty(rows, dtype=np.uint64)
        bits = np.empty(rows, dtype=np.uint8)
        closest = np.empty(rows, dtype=np.uint8)
        other = np.empty(rows, dtype=np.uint8)
        for table in self.tables:
            chunk = _chunk(queries, table.start, table.width)
            order = np.argsort(chunk)
            chunk = chunk[order]
            ordered = queries[order]
            query_words = [np.ascontiguousarray(ordered[:, w]) for w in table.first_words]
            near = np.zeros(rows, dtype=bool)
            passed = []  # (rows, probes) where a layer's hash passed the first words
            for mask in table.masks:
                np.bitwise_xor(chunk, mask, out=probe)
                for layer, (_, head_words) in enumerate(table.layers):
                    distance = closest if layer == 0 else other  # over the first words: at most 128, a byte
                    # mode="clip": a probe is always inside the table, and the default mode buffers the output.
                    for number, (head_word, query_word) in enumerate(zip(head_words, query_words, strict=True)):
                        np.take(head_word, probe, out=word, mode="clip")
                        np.bitwise_xor(word, query_word, out=word)
                        np.bitwise_count(word, out=distance if number == 0 else bits)
                        if number:
                            np.add(distance, bits, out=distance)
                    if layer:
                        np.minimum(closest, other, out=closest)
                np.less_equal(closest, self.radius, out=flag)
                if flag.any():
                    at = np.flatnonzero(flag)
                    passed.append((at, probe[at]))
                np.take(table.has_extra, probe, out=flag, mode="clip")
                if flag.any():
                    at = np.flatnonzero(flag)
                    self._near_extra(table, ordered, query_words, near, probe[at], at)
            if passed:
                who, probes = (np.concatenate(parts) for parts in zip(*passed, strict=True))
                if self.words == len(table.first_words):  # the first words were the whole hash
                    near[who] = True
                else:
                    for head, _ in table.layers:
                        near[who[self._within(self.hashes[head[probes]], ordered[who])]] = True
            found[order[near]] = True
        return found

    def _within(self, hashes: np.ndarray, queries: np.ndarray) -> np.ndarray:
        hashes, queries = hashes.reshape(len(hashes), self.words), queries.reshape(len(queries), self.words)
        return np.bitwise_count(hashes ^ queries).sum(axis=1, dtype=np.uint16) <= self.radius

    def _near_extra(self, table: _Table, ordered, query_words, near, buckets: np.ndarray, at: np.ndarray) -> None:
        """Mark the rows ``at`` within the radius of a hash beyond the inline layers of the buckets they probe."""
        starts = table.extra_offsets[buckets]
        counts = table.extra_offsets[buckets + 1] - starts
        ends = np.cumsum(counts)
        first = 0
        while first < len(at):  # parts of at most _PAIRS candidates (a crafted list can crowd one bucket)
            last = max(first + 1, int(np.searchsorted(ends, ends[first] - counts[first] + _PAIRS, "right")))
            part = slice(first, last)
            count = counts[part]
            before = np.cumsum(count) - count
            position = np.arange(int(count.sum()), dtype=np.intp) + np.repeat(starts[part] - before, count)
            who = np.repeat(at[part], count)
            distance = np.zeros(len(who), dtype=np.uint8)  # over the first words first, as for the layers
            for extra_word, query_word in zip(table.extra_first, query_words, strict=True):
                distance += np.bitwise_count(extra_word[position] ^ query_word[who])
            passed = distance <= self.radius
            who, position = who[passed], position[passed]
            if self.words > len(table.first_words):
                who = who[self._within(table.extra_hashes[position], ordered[who])]
            near[who] = True
            first = last


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
