"""Columns of hex text decoded in one call, for the client and the server alike (pure: pyarrow and numpy)."""

import binascii

import numpy as np
import pyarrow as pa


def unhexlify_column(strings: pa.Array, digits: int) -> np.ndarray:
    """The values of a string array without nulls, each exactly ``digits`` hex digits (either case), as an
    (n, digits // 2) uint8 array, by one ``unhexlify`` over its data buffer.

    Raises ``ValueError`` when a value is not hex or not that long (the total length catches a short value only
    with a long one beside it, so the length of each is checked too)."""
    chosen = strings.cast(pa.binary())
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int32)[chosen.offset : chosen.offset + len(chosen) + 1]
    if chosen.null_count or (np.diff(offsets) != digits).any():
        raise ValueError(f"a value is not {digits} hex digits")
    if not len(chosen):
        return np.zeros((0, digits // 2), dtype=np.uint8)
    data = memoryview(chosen.buffers()[2])[offsets[0] : offsets[-1]]
    try:
        raw = binascii.unhexlify(data)
    except binascii.Error:
        raise ValueError(f"a value is not {digits} hex digits") from None
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, digits // 2)
