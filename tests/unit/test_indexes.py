from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.indexes import IndexRangeError, format_ranges, parse_ranges


@pytest.mark.parametrize(
    ("indexes", "text"),
    [
        ([], ""),
        ([7], "7"),
        ([0, 1, 2, 3], "0-3"),
        ([1, 3, 4, 5, 9], "1,3-5,9"),
        ([5, 1, 3, 4, 1], "1,3-5"),
        (range(10_000), "0-9999"),
    ],
)
def test_format_ranges(indexes: list[int], text: str) -> None:
    assert format_ranges(indexes) == text


@given(st.sets(st.integers(0, 499), max_size=120))
def test_parse_is_the_inverse_of_format(indexes: set[int]) -> None:
    assert parse_ranges(format_ranges(indexes), 500) == sorted(indexes)


@pytest.mark.parametrize(
    "text", ["a", "1-", "-3", "3-1", "1,1", "5,2", "1,,2", "1-2-3", " 1", "\u00b2", "1" * 40, "0-10", "10"]
)
def test_parse_rejects_malformed_unordered_or_out_of_range_text(text: str) -> None:
    with pytest.raises(IndexRangeError):
        parse_ranges(text, 10)


def test_a_huge_range_is_refused_before_it_is_expanded() -> None:
    with pytest.raises(IndexRangeError, match="goes past the 3 keys"):
        parse_ranges("0-5000000", 3)  # would be 5 million integers; refused at once


@given(st.text(alphabet="0123456789,-", max_size=40))
def test_any_text_parses_to_indexes_in_range_or_is_refused(text: str) -> None:
    try:
        indexes = parse_ranges(text, 100)
    except IndexRangeError:
        return
    assert indexes == sorted(set(indexes))
    assert all(0 <= index < 100 for index in indexes)
