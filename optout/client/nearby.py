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

The table of a chunk is direct-addressed by the chunk's value, in one of two
shapes (``_Table``), each probed by one compiled loop (``hamming``, numba):

- 64-bit hashes (pHash, radius 8 over 1M entries: 3 chunks of 21 bits, radius 2
  each, 696 probes a query): two layers, ``slots[v]`` holding two whole hashes
  whose chunk is ``v``. A bucket with fewer holds its first hash again, or (no
  hash) some other blocked hash: whatever a probe compares against is a real
  blocked hash, so a match is always a true match and every probe is the same
  branch-free read of one 16-byte row. The few hashes of buckets of three or
  more are compared from their side: the queries that would probe such a
  bucket are the sorted queries whose chunk is the bucket's under a flip mask.
- 256-bit hashes (PDQ, radius 31 over 1M entries: 16 chunks of 16 bits, radius
  1 each, 272 probes a query): whole buckets, about 15 hashes each, stored
  contiguously in chunk order. A probe compares two words (128 bits) of every
  hash in its bucket in a loop that vectorises, and reads the whole hash only
  for the few that pass. Narrower chunks mean fewer probes and more hashes a
  probe; the plan's costs were measured on the kernels.

Speed comes from the memory order: queries are sorted by the chunk (a counting
sort) before the probes, and each flip mask sweeps a block of
``hamming.PROBE_BLOCK`` sorted queries, so the probes of neighbouring queries
land on neighbouring table rows (XOR with a constant keeps a common prefix)
and stream instead of missing the cache at every row.
"""

import functools
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from math import comb, exp

import numpy as np

_MAX_CHUNK_BITS = 22  # a direct-address table of 2**22 rows of two 64-bit words is 64 MB
_TABLE_COST = 7  # sorting the queries by a table's chunk, per query, in probes
_BUCKET_PROBE_COST = 2.2
_BUCKET_HASH_COST = 0.4
_SPLIT_ROWS = 65_536  # fewer queries than this are not worth a second thread


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the system has one, as a container sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _ball(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


def _masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit value of popcount at most ``radius``, in an order that keeps probes near each other."""
    out = [0]
    for k in range(1, radius + 1):
        out.extend(sum(1 << b for b in chosen) for chosen in itertools.combinations(range(bits), k))
    return np.sort(np.array(out, dtype=np.int64))


def _plan(total_bits: int, radius: int, entries: int) -> list[tuple[int, int, int]]:
    """The cheapest cut: [(first bit, width, chunk radius)], by probes and expected candidates per query.

    The costs are in probes of a two-layer table (64-bit hashes), measured on the kernels: a probe of a table of
    whole buckets (256-bit hashes) costs about two, and each hash in its bucket about 0.4 more."""
    best = None
    widest = min(_MAX_CHUNK_BITS, max(8, entries.bit_length() + 1))  # tables wider than the entries only cost memory
    for chunks in range(1, min(radius + 1, total_bits) + 1):
        widths = [min(widest, total_bits // chunks + (1 if i < total_bits % chunks else 0)) for i in range(chunks)]
        spare = radius + 1 - chunks  # radii t_i sum to this
        radii = [spare // chunks + (1 if i < spare % chunks else 0) for i in range(chunks)]
        cost = 0.0
        for width, chunk_radius in zip(widths, radii, strict=True):
            load = entries / (1 << width)
            if total_bits == 64:
                extra = load - 1 + exp(-load)  # expected hashes beyond a bucket's first, per probe
                cost += _TABLE_COST + _ball(width, chunk_radius) * (1 + 4 * extra)
            else:
                cost += _TABLE_COST + _ball(width, chunk_radius) * (_BUCKET_PROBE_COST + _BUCKET_HASH_COST * load)
        if best is None or cost < best[0]:
            starts = list(itertools.accumulate([0, *widths[:-1]]))
            best = (cost, list(zip(starts, widths, radii, strict=True)))
    if best is None:
        raise ValueError(f"no multi-index cut of {total_bits} bits for radius {radius}")
    return best[1]


def _chunk(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits [start, start + width) of (n, words) hashes, counted from the most significant bit, as int64."""
    first_word, offset = divmod(start, 64)
    last_word = (start + width - 1) // 64
    if first_word == last_word:  # a chunk spans at most two words
        value = (hashes[:, first_word] >> np.uint64(64 - (offset + width))) & np.uint64((1 << width) - 1)
    else:
        high_bits = 64 - offset
        low_bits = width - high_bits
        high = hashes[:, first_word] & np.uint64((1 << high_bits) - 1)
        value = (high << np.uint64(low_bits)) | (hashes[:, last_word] >> np.uint64(64 - low_bits))
    return value.astype(np.int64)


class _Table:
    """One chunk's direct-address table (see the module docstring).

    A 64-bit hash has two layers: ``slots[v, j]`` is the j-th hash of bucket ``v``; a bucket with fewer holds its
    first hash, or (empty) the next bucket's first: always a real blocked hash, so every probe reads one row of
    ``slots`` and compares two words. The other hashes of the rarer buckets of three or more are ``extra_hashes``
    (chunks ``extra_chunks``), which are compared from their side, with the queries that probe their bucket.

    A 256-bit hash has whole buckets: the hashes of bucket ``v`` are ``offsets[v]`` to ``offsets[v + 1]`` in
    chunk order, and ``bucket_words`` holds their two words with the fewest of the chunk's bits (the chunk's own
    bits are within the chunk radius anyway). Over 128 random bits a distance of 31 or less has a chance of
    about 1e-8, so the whole hash (row ``bucket_rows[i]`` of the index's hashes) is read only for the few that
    pass.
    """

    def __init__(self, hashes: np.ndarray, start: int, width: int, radius: int):
        from optout.client import hamming  # numba only where near-duplicates are looked up (hamming's docstring)

        self.start, self.width = start, width
        self.masks = _masks(width, radius)
        values = _chunk(hashes, start, width)
        order, _ = hamming.sort_by(values, width)
        counts = np.bincount(values, minlength=1 << width)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        words = hashes.shape[1]
        if words > 1:
            inside = [max(0, min(start + width, 64 * (w + 1)) - max(start, 64 * w)) for w in range(words)]
            self.first_words = np.array(sorted(range(words), key=lambda w: (inside[w], w))[:2])
            self.offsets = offsets
            self.bucket_high = np.ascontiguousarray(hashes[order, self.first_words[0]])
            self.bucket_low = np.ascontiguousarray(hashes[order, self.first_words[1]])
            self.bucket_rows = order.astype(np.int32)
            return
        first = offsets[:-1]
        slots = np.empty((1 << width, 2), dtype=np.uint64)
        for layer in range(2):
            row = np.where(counts > layer, first + layer, first)
            slots[:, layer] = hashes[order[np.minimum(row, len(order) - 1)], 0]
        self.slots = slots
        rank = np.arange(len(order)) - first[values[order]]
        extra = order[rank >= 2]
        self.extra_chunks = values[extra]
        self.extra_hashes = np.ascontiguousarray(hashes[extra, 0])

    def probe(self, queries: np.ndarray, hashes: np.ndarray, radius: int, found: np.ndarray) -> None:
        """Set ``found`` for the 256-bit queries this table finds within ``radius`` (64-bit ones: ``shared_probes``)."""
        from optout.client import hamming

        chunks = _chunk(queries, self.start, self.width)
        order, _ = hamming.sort_by(chunks, self.width)
        hamming.probe_buckets(
            queries, chunks, order, self.first_words, self.masks, self.offsets, self.bucket_high,
            self.bucket_low, self.bucket_rows, hashes, radius, found,
        )  # fmt: skip

    def sorted_queries(self, queries: np.ndarray) -> tuple:
        """(chunks, order, bounds, words in that order or None) of 64-bit queries, for ``shared_probes``."""
        from optout.client import hamming

        chunks = _chunk(queries, self.start, self.width)
        order, bounds = hamming.sort_by(chunks, self.width)
        return chunks, order, bounds, queries[order, 0] if len(self.extra_hashes) else None

    def shared_probes(self, queries: np.ndarray, sorted_: tuple, radius: int, shares: int) -> list:
        """``probe`` for 64-bit queries as ``2 * shares`` jobs for threads, each returning an answer of its own: the
        layers for contiguous shares of the sorted order (each as dense in chunk values as the whole, so that
        neighbouring probes still share cache lines), the crowded buckets' hashes for shares of the flip masks,
        against all the queries."""
        from optout.client import hamming

        chunks, order, bounds, sorted_words = sorted_
        cuts = np.linspace(0, len(order), shares + 1).astype(int)
        jobs = [
            functools.partial(
                _answer,
                len(queries),
                hamming.probe_layers,
                queries,
                chunks,
                order[low:high],
                self.masks,
                self.slots,
                radius,
            )  # fmt: skip
            for low, high in itertools.pairwise(cuts)
        ]
        if sorted_words is not None:
            jobs += [
                functools.partial(
                    _answer,
                    len(queries),
                    hamming.probe_extras,
                    sorted_words,
                    order,
                    bounds,
                    self.masks[share::shares],
                    self.extra_chunks,
                    self.extra_hashes,
                    radius,
                )  # fmt: skip
                for share in range(shares)
            ]
        return jobs


def _answer(rows: int, kernel, *args) -> np.ndarray:
    """What ``kernel`` finds, as an answer of its own for ``rows`` queries."""
    found = np.zeros(rows, dtype=np.bool_)
    kernel(*args, found)
    return found


class _Index:
    """Multi-index hashing over hashes given as (n, words) uint64 arrays, most significant word first.

    The kernels release the GIL, so ``threads`` threads (default: one per available CPU) build the tables and
    probe them side by side. PDQ's 16 tables split evenly among them: each thread probes a share of the tables
    with all the queries, into an answer of its own, and the answers are or-ed: sorted whole, the queries of a
    chunk stay together, as many as its bucket holds (``hamming.probe_buckets``). pHash's 3 would not: the threads
    share out each table's probes instead (``_Table.shared_probes``). A process
    that shares the machine with others of its kind (``filter --jobs``, a Spark executor's tasks) asks for
    fewer."""

    def __init__(self, hashes: np.ndarray, radius: int, total_bits: int, *, threads: int | None = None):
        if radius < 0:
            raise ValueError("a distance is at least 0")
        if threads is not None and threads < 1:
            raise ValueError("threads is at least 1")
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        self.radius = radius
        self.total_bits = total_bits
        self.words = self.hashes.shape[1]
        self.threads = threads or available_cpus()
        self.tables = []
        if len(self.hashes):
            plan = _plan(total_bits, radius, len(self.hashes))
            with ThreadPoolExecutor(min(self.threads, len(plan))) as pool:
                self.tables = list(pool.map(lambda cut: _Table(self.hashes, *cut), plan))

    def near(self, queries: np.ndarray) -> np.ndarray:
        """For an (n, words) array of query hashes, whether each is within the radius of a blocked hash."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, self.words)
        found = np.zeros(len(queries), dtype=np.bool_)
        if not len(self.hashes) or not len(queries):
            return found
        shares = min(self.threads, max(1, len(queries) // _SPLIT_ROWS))
        if self.words == 1:  # pHash's 3 tables would not split evenly among threads: each one's probes are shared
            with ThreadPoolExecutor(shares) as pool:
                sorted_ = list(pool.map(lambda table: table.sorted_queries(queries), self.tables))
                running = [
                    pool.submit(job)
                    for table, each in zip(self.tables, sorted_, strict=True)
                    for job in table.shared_probes(queries, each, self.radius, shares)
                ]
                for job in running:
                    found |= job.result()
        elif shares == 1:
            self._probe(self.tables, queries, found)
        else:  # PDQ's 16: a share of the tables each, all the queries
            answers = [found] + [np.zeros_like(found) for _ in range(shares - 1)]
            with ThreadPoolExecutor(shares) as pool:
                list(pool.map(lambda at: self._probe(self.tables[at::shares], queries, answers[at]), range(shares)))
            for answer in answers[1:]:
                found |= answer
        return found

    def _probe(self, tables: list["_Table"], queries: np.ndarray, found: np.ndarray) -> None:
        for table in tables:
            table.probe(queries, self.hashes, self.radius, found)


class PHashIndex(_Index):
    """Blocked 64-bit pHashes (uint64), for ``near(queries)`` within ``radius``."""

    def __init__(self, phashes: np.ndarray, radius: int, *, threads: int | None = None):
        super().__init__(np.asarray(phashes, dtype=np.uint64).reshape(-1, 1), radius, 64, threads=threads)


class PDQIndex(_Index):
    """Blocked 256-bit PDQ hashes as (n, 4) big-endian words, for ``near(queries)`` within ``radius``."""

    def __init__(self, pdqs: np.ndarray, radius: int, *, threads: int | None = None):
        super().__init__(np.asarray(pdqs).astype(np.uint64).reshape(-1, 4), radius, 256, threads=threads)


def linear_near(hashes: np.ndarray, queries: np.ndarray, radius: int) -> np.ndarray:
    """The same answer by a linear scan (the definition ``near`` must equal)."""
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(len(hashes), -1)
    queries = np.asarray(queries, dtype=np.uint64).reshape(len(queries), -1)
    found = np.zeros(len(queries), dtype=bool)
    for row in range(len(queries)):
        found[row] = bool(len(hashes)) and int(np.bitwise_count(hashes ^ queries[row]).sum(axis=1).min()) <= radius
    return found
