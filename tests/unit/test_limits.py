"""The limiter's pure logic with a fake clock: token buckets, AIMD steps, the give-up bound; the
asyncio slots under a moving limit; and a throttled call that is no longer wanted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.config import AdaptiveConcurrency, RateLimit
from filecleanup.metrics import Metrics
from filecleanup.storage.base import ChunkResult, ConcurrencyLimited, NotSent, StorageThrottled
from filecleanup.storage.limits import AdaptiveSlots, AimdLimit, Limiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenBucket:
    def test_a_full_bucket_lets_a_seconds_worth_through_then_paces(self) -> None:
        bucket = TokenBucket.full(10, now=0)
        assert [bucket.reserve(1, now=0) for _ in range(10)] == [0.0] * 10
        assert bucket.reserve(1, now=0) == pytest.approx(0.1)
        assert bucket.reserve(1, now=0) == pytest.approx(0.2)

    def test_a_reservation_larger_than_the_bucket_goes_into_debt(self) -> None:
        bucket = TokenBucket.full(50, now=0)
        assert bucket.reserve(100, now=0) == pytest.approx(1.0)  # 50 there, 50 owed
        assert bucket.reserve(100, now=1.0) == pytest.approx(2.0)  # the debt paid, 100 more owed

    def test_an_idle_bucket_refills_only_to_its_capacity(self) -> None:
        bucket = TokenBucket.full(5, now=0)
        bucket.reserve(5, now=0)
        assert bucket.reserve(5, now=3600) == 0.0
        assert bucket.reserve(1, now=3600) == pytest.approx(0.2)

    @given(
        rate=st.floats(0.5, 1000),
        amounts=st.lists(st.integers(1, 1000), min_size=1, max_size=50),
    )
    def test_the_long_run_rate_holds_for_any_reservations(self, rate: float, amounts: list[int]) -> None:
        """Callers that wait as told never take more than a burst plus rate x elapsed."""
        bucket = TokenBucket.full(rate, now=0)
        now, taken = 0.0, 0
        for amount in amounts:
            now += bucket.reserve(amount, now)
            taken += amount
            assert taken <= (bucket.capacity + rate * now) * (1 + 1e-9)


class TestAimd:
    def test_ramps_up_one_per_success_until_the_first_throttle(self) -> None:
        aimd = AimdLimit(maximum=16, limit=2)
        for _ in range(6):
            aimd.succeeded(in_flight=aimd.limit)
        assert aimd.limit == 8

    def test_never_above_the_maximum(self) -> None:
        aimd = AimdLimit(maximum=4, limit=2)
        for _ in range(100):
            aimd.succeeded(in_flight=4)
        assert aimd.limit == 4

    def test_a_throttle_cuts_multiplicatively_once_per_cooldown(self) -> None:
        aimd = AimdLimit(maximum=32, limit=20)
        aimd.throttled(now=0, cooldown=1)
        assert aimd.limit == 14
        aimd.throttled(now=0.5, cooldown=1)  # the same congestion, reported by calls in flight
        assert aimd.limit == 14
        aimd.throttled(now=1.0, cooldown=1)
        assert aimd.limit == 9

    def test_after_a_throttle_it_grows_by_one_per_window_of_successes(self) -> None:
        aimd = AimdLimit(maximum=32, limit=10)
        aimd.throttled(now=0, cooldown=1)
        assert aimd.limit == 7
        for _ in range(6):
            aimd.succeeded(in_flight=7)
        assert aimd.limit == 7
        aimd.succeeded(in_flight=7)  # the 7th success of a window of 7
        assert aimd.limit == 8
        for _ in range(8):
            aimd.succeeded(in_flight=8)
        assert aimd.limit == 9

    def test_an_unused_limit_does_not_grow(self) -> None:
        aimd = AimdLimit(maximum=32, limit=10)
        for _ in range(100):
            aimd.succeeded(in_flight=4)  # less than half the slots in use
        assert aimd.limit == 10

    def test_never_below_the_minimum_and_the_clock_of_throttling_there(self) -> None:
        aimd = AimdLimit(maximum=8, minimum=2, limit=3)
        aimd.throttled(now=0, cooldown=1)
        assert aimd.limit == 2
        assert aimd.throttled_at_minimum_for(now=5) == 5
        aimd.throttled(now=10, cooldown=1)
        assert (aimd.limit, aimd.throttled_at_minimum_for(now=12)) == (2, 12)
        aimd.succeeded(in_flight=1)
        assert aimd.throttled_at_minimum_for(now=13) == 0

    @given(
        st.lists(
            st.tuples(st.booleans(), st.integers(0, 64), st.floats(0, 5)),
            max_size=200,
        ),
        st.integers(1, 8),
        st.integers(8, 64),
    )
    def test_the_limit_always_stays_within_its_bounds(
        self, steps: list[tuple[bool, int, float]], minimum: int, maximum: int
    ) -> None:
        aimd = AimdLimit(maximum=maximum, minimum=minimum, limit=minimum)
        now = 0.0
        for throttled, in_flight, elapsed in steps:
            now += elapsed
            if throttled:
                aimd.throttled(now, cooldown=1)
            else:
                aimd.succeeded(in_flight)
            assert minimum <= aimd.limit <= maximum


class TestLimiter:
    def test_retry_after_is_the_wait_and_a_long_one_means_unavailable(self) -> None:
        clock = FakeClock()
        limiter = Limiter(8, adaptive=AdaptiveConcurrency(unavailable_after_seconds=30), clock=clock)
        assert limiter.throttled(retry_after=2.0) == 2.0
        assert limiter.throttled(retry_after=31.0) is None

    def test_without_retry_after_the_wait_is_about_a_second(self) -> None:
        limiter = Limiter(8, adaptive=AdaptiveConcurrency(), clock=FakeClock(), jitter=lambda: 0.5)
        assert limiter.throttled(retry_after=None) == pytest.approx(0.75)

    def test_throttling_that_lasts_at_the_minimum_makes_the_storage_unavailable(self) -> None:
        clock = FakeClock()
        limiter = Limiter(
            8,
            adaptive=AdaptiveConcurrency(initial_requests=1, unavailable_after_seconds=10),
            clock=clock,
        )
        assert limiter.throttled(retry_after=1.0) == 1.0
        clock.now += 9
        assert limiter.throttled(retry_after=1.0) == 1.0
        clock.now += 2
        assert limiter.throttled(retry_after=1.0) is None

    def test_without_adaptive_concurrency_the_limit_stays_at_the_maximum(self) -> None:
        limiter = Limiter(8, clock=FakeClock())
        limiter.throttled(retry_after=1.0)
        assert limiter.limit == 8

    async def test_rate_limited_calls_wait_for_their_tokens(self) -> None:
        clock = FakeClock()
        limiter = Limiter(8, rate_limit=RateLimit(keys_per_second=1000), clock=clock)
        slept: list[float] = []
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            await real_sleep(0)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncio, "sleep", sleep)
            await limiter.acquire(1000)
            await limiter.acquire(500)
        assert slept == [pytest.approx(0.5)]
        assert limiter.aimd.limit == 8


async def test_slots_hold_calls_to_a_moving_limit() -> None:
    aimd = AimdLimit(maximum=4, limit=2, ramping_up=False)
    slots = AdaptiveSlots(aimd)
    await slots.acquire()
    await slots.acquire()
    third = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    aimd.limit = 3
    slots.wake()
    await asyncio.wait_for(third, 1)
    assert slots.in_flight == 3
    fourth = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    fourth.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fourth
    slots.release()
    assert slots.in_flight == 2
    await asyncio.wait_for(slots.acquire(), 1)  # the cancelled waiter left no trace


async def test_a_throttled_call_is_not_sent_again_once_it_is_no_longer_wanted() -> None:
    calls: list[list[str]] = []
    wanted = True

    class Refusing:
        name = "photos"
        max_keys_per_call: int | None = None
        holds_manifests = False

        async def delete(self, keys: Sequence[str]) -> ChunkResult:
            nonlocal wanted
            calls.append(list(keys))
            wanted = False  # say, the object is suspended while its refused call waits
            raise StorageThrottled("503 Slow Down", retry_after=0.01)

        async def aclose(self) -> None:
            """Nothing to release."""

    storage = ConcurrencyLimited(Refusing(), Limiter(1), Metrics())
    with pytest.raises(NotSent):
        await asyncio.wait_for(storage.delete(["a", "b"], may_start=lambda: wanted), 5)
    assert calls == [["a", "b"]]  # refused once, never sent again
    with pytest.raises(NotSent):  # and its one slot was given back
        await asyncio.wait_for(storage.delete(["c"], may_start=lambda: False), 1)
