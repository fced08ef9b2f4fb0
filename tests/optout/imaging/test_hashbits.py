import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.imaging import hashbits


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_signed_storage_round_trips_every_64_bit_value(value):
    signed = hashbits.to_signed64(value)
    assert -(1 << 63) <= signed < (1 << 63)
    assert hashbits.from_signed64(signed) == value


@given(st.integers(min_value=0, max_value=(1 << 256) - 1))
def test_pdq_words_round_trip(value):
    words = hashbits.pdq_to_words(value)
    assert len(words) == 4
    assert hashbits.pdq_from_words(words) == value
    assert hashbits.pdq_from_hex(hashbits.pdq_to_hex(value)) == value


def test_pdq_words_are_most_significant_first():
    assert hashbits.pdq_to_words(1 << 255) == (-(1 << 63), 0, 0, 0)
    assert hashbits.pdq_to_words(1) == (0, 0, 0, 1)


@pytest.mark.parametrize("text", ["", "abc", "g" * 16, "0" * 15, "0" * 17])
def test_rejects_malformed_phash_hex(text):
    with pytest.raises(hashbits.BadHash):
        hashbits.phash_from_hex(text)


def test_accepts_upper_case_and_surrounding_space():
    assert hashbits.phash_from_hex(" FFFF000000000001 ") == 0xFFFF000000000001
    assert hashbits.phash_to_hex(1) == "0000000000000001"


def test_hamming_counts_differing_bits():
    assert hashbits.hamming(0b1011, 0b0001) == 2
    assert hashbits.hamming((1 << 256) - 1, 0) == 256
