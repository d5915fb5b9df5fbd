"""Counts in messages agree with their nouns and verbs."""

from __future__ import annotations

import pytest

from filecleanup.api.wording import agreeing, plural


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 keys"), (1, "1 key"), (2, "2 keys"), (1000, "1000 keys")],
)
def test_plural_agrees_with_the_count(count: int, expected: str) -> None:
    assert plural(count, "key") == expected


def test_an_irregular_plural_is_given() -> None:
    assert (plural(1, "retry", "retries"), plural(3, "retry", "retries")) == ("1 retry", "3 retries")
    assert plural(2, "failed key") == "2 failed keys"


def test_a_verb_agrees_with_the_count() -> None:
    assert [agreeing(count, "was", "were") for count in (0, 1, 2)] == ["were", "was", "were"]
