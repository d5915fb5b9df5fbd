from __future__ import annotations

import random

import pytest

from filecleanup.indexes import IndexRangeError, format_ranges, parse_ranges


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


def test_parse_is_the_inverse_of_format_for_random_sets() -> None:
    rng = random.Random(7)
    for _ in range(200):
        indexes = sorted(rng.sample(range(500), rng.randint(0, 120)))
        assert parse_ranges(format_ranges(indexes)) == indexes


@pytest.mark.parametrize("text", ["a", "1-", "-3", "3-1", "1,1", "5,2", "1,,2", "1-2-3", " 1"])
def test_parse_rejects_malformed_or_unordered_ranges(text: str) -> None:
    with pytest.raises(IndexRangeError):
        parse_ranges(text)
