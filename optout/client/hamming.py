"""The compiled loops of the near-duplicate index (``nearby``): numba kernels, one call per table.

A module of its own so that only a run that looks up near-duplicates imports numba (about half a second) and
loads its cached machine code; a first run on a machine compiles the kernels, a few seconds, and caches them.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

PROBE_BLOCK = 4096  # sorted queries each flip mask sweeps in turn: their chunks and words stay in the L2 cache


@intrinsic
def _popcount(typingctx, value):
    """The bits set in a uint64, as the CPU's own instruction (LLVM's ctpop; numba has no np.bitwise_count)."""
    if not isinstance(value, types.Integer) or value.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        word = ir.IntType(64)
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(word, [word]), "llvm.ctpop.i64")
        return builder.call(ctpop, [args[0]])

    return types.uint64(types.uint64), codegen


def _compiled(function=None, **options):
    """``numba.njit`` with the machine code cached on disk, so only the first run compiles (beside the module
    in ``__pycache__``, else in the user's cache directory, or wherever NUMBA_CACHE_DIR says). Where no such
    directory is writable numba refuses to cache; then every process compiles, once, rather than fail."""
    if function is None:
        return lambda function: _compiled(function, **options)
    try:
        return numba.njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, **options)(function)


@_compiled
def sort_by(values, width):
    """The stable order of ``values`` (each below 2**width), by a counting sort, and where each value's rows
    begin in that order (``bounds[v]`` to ``bounds[v + 1]``)."""
    bounds = np.zeros((1 << width) + 1, dtype=np.int64)
    for value in values:
        bounds[value + 1] += 1
    for value in range(1 << width):
        bounds[value + 1] += bounds[value]
    starts = bounds.copy()
    order = np.empty(len(values), dtype=np.int64)
    for row in range(len(values)):
        value = values[row]
        order[starts[value]] = row
        starts[value] += 1
    return order, bounds


@_compiled(inline="always")
def _within(hash_, query, radius):
    distance = 0
    for word in range(len(query)):
        distance += _popcount(hash_[word] ^ query[word])
    return distance <= radius


@_compiled
def probe_layers(queries, chunks, order, masks, slots, radius, found):
    """Set ``found`` for the 64-bit queries within ``radius`` of a blocked hash in a layer of one table (see
    ``nearby._Table``) that agrees within the chunk radius on its chunk. Queries go in blocks of ``PROBE_BLOCK`` in
    chunk order, and each flip mask sweeps a block: its probes of neighbouring queries read neighbouring table rows.
    The loop has no branch but the match: a test of each probe for a crowded bucket made it a third slower."""
    block_chunks = np.empty(PROBE_BLOCK, dtype=np.int64)
    block_words = np.empty(PROBE_BLOCK, dtype=np.uint64)
    for first in range(0, len(order), PROBE_BLOCK):
        size = min(PROBE_BLOCK, len(order) - first)
        for at in range(size):
            block_chunks[at] = chunks[order[first + at]]
            block_words[at] = queries[order[first + at], 0]
        for mask in masks:
            for at in range(size):
                probe = block_chunks[at] ^ mask
                word = block_words[at]
                if min(_popcount(slots[probe, 0] ^ word), _popcount(slots[probe, 1] ^ word)) <= radius:
                    found[order[first + at]] = True


@_compiled
def probe_extras(sorted_words, order, bounds, masks, extra_chunks, extra_hashes, radius, found):
    """The same for a table's hashes beyond its layers (buckets of three or more), from their side: the queries
    that would probe an extra hash's bucket are those whose chunk is the bucket's under a flip mask, the rows
    ``bounds[c]`` to ``bounds[c + 1]`` of the queries in chunk order (``sorted_words``, ``order``)."""
    for mask in masks:
        for extra in range(len(extra_chunks)):
            chunk = extra_chunks[extra] ^ mask
            word = extra_hashes[extra]
            for at in range(bounds[chunk], bounds[chunk + 1]):
                if _popcount(sorted_words[at] ^ word) <= radius:
                    found[order[at]] = True


@_compiled
def probe_buckets(
    queries, chunks, order, first_words, masks, offsets, bucket_high, bucket_low, bucket_rows, hashes, radius, found
):
    """The same for 256-bit queries and a table of whole buckets (see ``nearby._Table``). The queries of a block
    that share a chunk (about as many as a bucket holds) go together: for each flip mask, every hash of the probed
    bucket is compared on its two first words with each of them, in a loop over the queries that vectorises, and
    the whole hash is read only when one of them passes."""
    block_chunks = np.empty(PROBE_BLOCK, dtype=np.int64)
    block_high = np.empty(PROBE_BLOCK, dtype=np.uint64)
    block_low = np.empty(PROBE_BLOCK, dtype=np.uint64)
    for first in range(0, len(order), PROBE_BLOCK):
        size = min(PROBE_BLOCK, len(order) - first)
        for at in range(size):
            row = order[first + at]
            block_chunks[at] = chunks[row]
            block_high[at] = queries[row, first_words[0]]
            block_low[at] = queries[row, first_words[1]]
        start = 0
        while start < size:
            end = start + 1
            while end < size and block_chunks[end] == block_chunks[start]:
                end += 1
            for mask in masks:
                probe = block_chunks[start] ^ mask
                for hash_ in range(offsets[probe], offsets[probe + 1]):
                    high, low = bucket_high[hash_], bucket_low[hash_]
                    passed = 0
                    for at in range(start, end):  # no early exit: the loop vectorises
                        passed += _popcount(block_high[at] ^ high) + _popcount(block_low[at] ^ low) <= radius
                    if passed:  # about 1e-8 of the pairs compared (see nearby._Table): verify them whole
                        whole = hashes[bucket_rows[hash_]]
                        for at in range(start, end):
                            row = order[first + at]
                            if _within(whole, queries[row], radius):
                                found[row] = True
            start = end
