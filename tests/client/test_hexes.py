"""The shared hex column decoder (client filter, server artifacts, importer)."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.client.hexes import unhexlify_column


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), max_size=50), st.booleans(), st.integers(0, 3))
def test_decodes_what_hex_wrote_in_either_case_from_any_slice(values, upper, skip):
    texts = [value.hex().upper() if upper else value.hex() for value in values]
    column = pa.array(["x" * 16] * skip + texts).slice(skip)  # an offset into the buffers, as a filter leaves
    decoded = unhexlify_column(column, 16)
    assert decoded.shape == (len(values), 8)
    assert [bytes(row) for row in decoded] == values


@pytest.mark.parametrize(
    "texts",
    [
        ["0" * 15 + "g"],  # not hex
        ["0" * 15, "0" * 17],  # the right total length, each the wrong one
        ["0" * 14],
        ["0" * 16, None],
    ],
)
def test_refuses_anything_but_values_of_exactly_the_digits(texts):
    with pytest.raises(ValueError, match="16 hex digits"):
        unhexlify_column(pa.array(texts, pa.string()), 16)


def test_an_empty_column_is_an_empty_array():
    assert unhexlify_column(pa.array([], pa.string()), 64).shape == (0, 32)
    assert unhexlify_column(pa.array([], pa.string()), 64).dtype == np.uint8
