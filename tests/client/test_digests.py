"""The compiled SHA-256 of a column (OpenSSL's functions from numba) gives hashlib's digests, and the filter's URL
digests are the same whichever of the two computes them."""

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.client import batch, digests


@pytest.fixture
def compiled():
    hash_column = digests._compiled()
    assert hash_column is not None, "this machine's Python has OpenSSL: the compiled path must be available"
    return hash_column


def expected(values) -> list[bytes]:
    return [hashlib.sha256(value).digest() for value in values]


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.binary(max_size=300), max_size=40), start=st.integers(0, 5))
def test_the_compiled_digests_are_hashlibs(values, start):
    hash_column = digests._compiled()
    column = pa.array(values, pa.binary()).slice(min(start, len(values)))
    assert [row.tobytes() for row in hash_column(column)] == expected(values[min(start, len(values)) :])


def test_block_edges_and_an_empty_column(compiled):
    values = [b"u" * size for size in (0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 128, 4096)]
    assert [row.tobytes() for row in compiled(pa.array(values, pa.binary()))] == expected(values)
    assert compiled(pa.array([], pa.binary())).shape == (0, 32)


def test_a_process_switches_to_the_compiled_loop_after_enough_rows(monkeypatch):
    calls = []
    real = digests._compiled()
    monkeypatch.setattr(digests, "_compiled", lambda: lambda column: calls.append(len(column)) or real(column))
    monkeypatch.setattr(digests, "_hashed", 0)
    monkeypatch.setattr(digests, "COMPILED_FROM_ROWS", 10)
    column = pa.array([b"%d" % i for i in range(6)], pa.binary())
    first, second = digests.column_sha256(column), digests.column_sha256(column)
    assert calls == [6]  # the first 6 by hashlib (6 < 10), the next 6 compiled (12 >= 10)
    assert first.tolist() == second.tolist() == [list(digest) for digest in expected(column.to_pylist())]


def test_without_the_compiled_loop_hashlib_gives_the_digests(monkeypatch):
    monkeypatch.setattr(digests, "_compiled", lambda: None)
    monkeypatch.setattr(digests, "COMPILED_FROM_ROWS", 0)
    column = pa.array([b"https://a.example/1.jpg", b""], pa.binary())
    assert [row.tobytes() for row in digests.column_sha256(column)] == expected(column.to_pylist())


@pytest.mark.parametrize("type_", [pa.string(), pa.large_string(), pa.binary()])
def test_url_digests_do_not_depend_on_which_computes_them(monkeypatch, type_):
    urls = [
        "https://cdn.example.net/a/1.jpg",
        "HTTP://Example.COM/%7ea/../b.png",
        None,
        "not a url",
        "https://x.example/é",
    ]
    column = pa.array([url.encode() if url and type_ == pa.binary() else url for url in urls], type_)
    monkeypatch.setattr(digests, "COMPILED_FROM_ROWS", 10**12)
    by_hashlib = batch.url_digests(column)
    monkeypatch.setattr(digests, "COMPILED_FROM_ROWS", 0)
    compiled = batch.url_digests(column)
    assert by_hashlib[0].tolist() == compiled[0].tolist() and by_hashlib[1].tolist() == compiled[1].tolist()
    assert by_hashlib[1].tolist() == [False, False, True, True, False]
    assert np.asarray(by_hashlib[0][0].astype(">u8")).tobytes() == hashlib.sha256(urls[0].encode()).digest()
