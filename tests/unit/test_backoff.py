"""Back-off: doubling, capped, jittered; the wait while a storage is unavailable."""

from __future__ import annotations

import pytest

from filecleanup.api.models import (
    Backoff,
)
from filecleanup.decide import backoff


class TestBackoff:
    backoff = Backoff(initial_seconds=5, max_seconds=300)

    @pytest.mark.parametrize(
        ("retry_round", "expected"), [(1, 5), (2, 10), (3, 20), (6, 160), (7, 300), (50, 300)]
    )
    def test_doubles_per_round_up_to_the_cap(self, retry_round: int, expected: float) -> None:
        assert backoff.retry_delay(self.backoff, retry_round, jitter=0.0) == expected

    @pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
    def test_jitter_shortens_by_at_most_a_fifth_and_never_passes_the_cap(self, jitter: float) -> None:
        delay = backoff.retry_delay(self.backoff, 20, jitter)
        assert 240 <= delay <= 300

    def test_retry_after_wins_while_unavailable(self) -> None:
        assert backoff.unavailable_delay(self.backoff, 1000, retry_after=7, jitter=0.9) == 7

    def test_absurd_retry_after_is_capped_at_an_hour(self) -> None:
        assert backoff.unavailable_delay(self.backoff, 0, retry_after=10**9, jitter=0) == 3600

    @pytest.mark.parametrize(("unavailable_for", "expected"), [(0, 5), (3, 5), (40, 40), (10_000, 300)])
    def test_unavailable_wait_grows_with_the_outage(self, unavailable_for: float, expected: float) -> None:
        assert backoff.unavailable_delay(self.backoff, unavailable_for, None, jitter=0) == expected
