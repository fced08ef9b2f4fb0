"""SHA-256 of every value of an Arrow binary column at once, without a Python call per value.

``hashlib.sha256(value).digest()`` costs about half a microsecond a URL, nearly all of it the Python call around
OpenSSL's own block function, and it holds the GIL: it was the filter's floor. Here one compiled loop (numba) calls
OpenSSL's SHA-256 (``SHA256_Init``, ``SHA256_Update``, ``SHA256_Final``: the library behind ``hashlib``, so the same
code and the same CPU extensions) over the column's buffers as they are, about a tenth of a microsecond a URL,
without the GIL.

It is an optimisation, never a second definition: the functions are found in the libcrypto that Python's own
``_hashlib`` is linked with, and the compiled loop must give ``hashlib``'s digests for a set of test values before
it is used at all. Where any of that fails (another OpenSSL, a Python built without one, a platform where the
symbols cannot be resolved), or for few values (importing numba costs about half a second, once a process),
``column_sha256`` hashes with ``hashlib``, the same digests.
"""

import functools
import hashlib

import numpy as np
import pyarrow as pa

COMPILED_FROM_ROWS = 500_000  # values a process hashes with hashlib before the compiled loop pays for numba
_CHECK = [b"", b"a", b"https://example.com/", b"x" * 55, b"y" * 56, b"z" * 64, b"w" * 119, b"v" * 1000]
_hashed = 0  # values this process hashed with hashlib


def column_sha256(column: pa.Array) -> np.ndarray:
    """The sha256 of each value of a binary (not large_binary) Arrow array without nulls, as a writable (n, 32)
    uint8 array."""
    global _hashed
    rows = len(column)
    if _hashed + rows >= COMPILED_FROM_ROWS and _compiled() is not None:
        return _compiled()(column)
    _hashed += rows
    sha256 = hashlib.sha256
    joined = bytearray().join([sha256(value).digest() for value in column.to_pylist()])  # the cheapest loop
    return np.frombuffer(joined, dtype=np.uint8).reshape(rows, 32)  # writable, as the compiled loop's


@functools.cache
def _compiled():
    """The compiled hashing of a column, or None where it cannot be had or does not give hashlib's digests."""
    try:
        from optout.client import openssl  # numba, and OpenSSL's symbols made known to its JIT
    except (ImportError, OSError, AttributeError):  # no numba, no libcrypto, or one without these functions
        return None

    def hash_column(column: pa.Array) -> np.ndarray:
        _, offsets, data = column.buffers()
        offsets = np.frombuffer(offsets, dtype=np.int32, count=len(column) + 1, offset=4 * column.offset)
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, dtype=np.uint8)
        out = np.empty((len(column), 32), dtype=np.uint8)
        openssl.sha256_rows(data, offsets, out)
        return out

    check = pa.array(_CHECK, pa.binary())
    expected = [hashlib.sha256(value).digest() for value in _CHECK]
    for part, digests in ((check, expected), (check.slice(3), expected[3:])):  # a slice starts at an offset
        if [row.tobytes() for row in hash_column(part)] != digests:
            return None
    return hash_column
