"""The limiter's pure logic with a fake clock: token buckets, AIMD steps, the give-up bound, the waits a
``Retry-After`` asks for; the asyncio slots under a moving limit, handed over first come, first served;
the tokens a dry run's check takes; and a throttled call that is no longer wanted."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from filecleanup.api.config import AdaptiveConcurrency, RateLimit
from filecleanup.api.metrics import Metrics
from filecleanup.storage.base import (
    ChunkResult,
    ConcurrencyLimited,
    ExistsResult,
    NotSent,
    StorageThrottled,
)
from filecleanup.storage.limits import (
    MIN_COOLDOWN_SECONDS,
    MIN_PACED_RATE,
    PACE_CUT_RATIO,
    PACE_GROWTH,
    THROTTLED_WAIT_SECONDS,
    AdaptiveSlots,
    AimdLimit,
    Limiter,
    PacedRate,
    TokenBucket,
)
from filecleanup.storage.transport import parse_retry_after
from tools.devkit.gates import OPEN_GATE

NOW = 1795694400.0  # 2026-11-26 12:00:00 UTC


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slept() -> Iterator[list[float]]:
    """``asyncio.sleep`` recorded instead of slept: the waits the limiter asks for, with no time passing."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", sleep)
        yield waits


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
    def test_retry_after_is_the_least_wait_spread_by_half_and_a_long_one_means_unavailable(self) -> None:
        clock = FakeClock()
        limiter = Limiter(
            8, adaptive=AdaptiveConcurrency(unavailable_after_seconds=30), clock=clock, jitter=lambda: 0.5
        )
        assert limiter.throttled(retry_after=2.0) == 2.5  # calls refused together come back apart
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
            jitter=lambda: 0.0,
        )
        assert limiter.throttled(retry_after=1.0) == 1.0
        clock.now += 9
        assert limiter.throttled(retry_after=1.0) == 1.0
        clock.now += 2
        assert limiter.throttled(retry_after=1.0) is None

    @pytest.mark.parametrize("retry_after", [0.0, -30.0, math.nan])
    def test_a_retry_after_that_asks_for_no_wait_waits_as_if_there_were_none(
        self, retry_after: float
    ) -> None:
        """``Retry-After: 0`` or a date in the past: sent again at once, a refused call would come back
        as fast as the storage can refuse it."""
        limiter = Limiter(8, adaptive=AdaptiveConcurrency(), clock=FakeClock(), jitter=lambda: 0.5)
        assert limiter.throttled(retry_after=retry_after) == pytest.approx(0.75)

    def test_a_retry_after_shorter_than_the_default_wait_waits_the_default(self) -> None:
        limiter = Limiter(8, adaptive=AdaptiveConcurrency(), clock=FakeClock(), jitter=lambda: 0.5)
        assert limiter.throttled(retry_after=0.2) == pytest.approx(0.75)
        assert limiter.throttled(retry_after=0.9) == pytest.approx(0.9 * 1.25)  # a hint, spread

    def test_a_huge_retry_after_does_not_stop_later_cuts(self) -> None:
        clock = FakeClock()
        limiter = Limiter(
            16,
            adaptive=AdaptiveConcurrency(initial_requests=16, unavailable_after_seconds=30),
            clock=clock,
        )
        assert limiter.throttled(retry_after=9_999_999_999.0) is None  # longer than the bound: an outage
        assert limiter.limit == 11
        clock.now += 30  # the hint counts for no more than the bound
        assert 1.0 <= (limiter.throttled(retry_after=1.0) or 0) <= 1.5
        assert limiter.limit == 11  # paced since the first cut: this one cuts the pace
        assert limiter.pacing is not None
        assert limiter.pacing.cut_at == clock.now

    @given(
        retry_after=st.none() | st.floats(),
        jitter=st.floats(0, 1, exclude_max=True),
        bound=st.floats(0.01, 3600),
    )
    def test_any_retry_after_waits_at_least_the_default_and_never_stops_the_cuts(
        self, retry_after: float | None, jitter: float, bound: float
    ) -> None:
        clock = FakeClock()
        limiter = Limiter(
            64,
            adaptive=AdaptiveConcurrency(initial_requests=64, unavailable_after_seconds=bound),
            clock=clock,
            jitter=lambda: jitter,
        )
        wait = limiter.throttled(retry_after)
        default = THROTTLED_WAIT_SECONDS * (0.5 + 0.5 * jitter)
        assert wait is None or default <= wait <= bound
        clock.now += max(bound, MIN_COOLDOWN_SECONDS)
        limiter.throttled(retry_after=None)
        assert limiter.limit < 64  # the first cut: the width
        assert limiter.pacing is not None
        assert limiter.pacing.cut_at == clock.now  # and this one: the pace

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


class TestParseRetryAfter:
    """A ``Retry-After`` comes from a peer we do not control: it may ask for no wait at all, or for
    centuries. No wait asked is no hint (the caller waits by its own rule)."""

    @given(st.text(max_size=60))
    def test_a_header_asks_for_a_positive_wait_or_for_nothing(self, value: str) -> None:
        seconds = parse_retry_after(value, now=NOW)
        assert seconds is None or (seconds > 0 and math.isfinite(seconds))

    @given(st.integers(0, 10**10 - 1), st.integers(0, 9), st.sampled_from(["", " ", "\t"]))
    def test_delta_seconds_and_zero_asks_for_nothing(self, seconds: int, zeros: int, space: str) -> None:
        digits = str(seconds).rjust(min(10, len(str(seconds)) + zeros), "0")  # at most 10 digits
        expected = float(seconds) if seconds else None
        assert parse_retry_after(f"{space}{digits}{space}", now=NOW) == expected

    @given(st.integers(-1_700_000_000, 10**10), st.sampled_from(["GMT", "-0000", "+0000"]))
    def test_an_http_date_is_the_seconds_until_it_and_nothing_once_it_is_past(
        self, offset: int, zone: str
    ) -> None:
        when = datetime.datetime.fromtimestamp(NOW + offset, datetime.UTC)
        header = email.utils.format_datetime(when, usegmt=True).replace("GMT", zone)
        assert parse_retry_after(header, now=NOW) == (float(offset) if offset > 0 else None)


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


async def test_a_freed_slot_goes_to_the_longest_waiter_never_to_a_newcomer() -> None:
    slots = AdaptiveSlots(AimdLimit(maximum=1, limit=1, ramping_up=False))
    order: list[str] = []

    async def call(name: str) -> None:
        await slots.acquire()
        order.append(name)
        slots.release()

    await slots.acquire()
    waiters = [asyncio.create_task(call(name)) for name in ("first", "second")]
    await asyncio.sleep(0)  # both wait in line
    slots.release()
    await call("newcomer")  # asks before the woken waiter has run: the slot is already the first's
    await asyncio.gather(*waiters)
    assert order == ["first", "second", "newcomer"]


async def test_a_cancelled_waiter_gives_up_its_place_and_a_woken_one_its_slot() -> None:
    slots = AdaptiveSlots(AimdLimit(maximum=1, limit=1, ramping_up=False))
    await slots.acquire()
    first, second, third = (asyncio.create_task(slots.acquire()) for _ in range(3))
    await asyncio.sleep(0)
    first.cancel()  # cancelled while it waits...
    slots.release()  # ...and the slot freed before it has run: the next in line gets it
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    slots.release()  # handed to the third...
    third.cancel()  # ...which is cancelled before it has run: it gives the slot back
    with pytest.raises(asyncio.CancelledError):
        await third
    assert slots.in_flight == 0
    await slots.acquire()


@example(["arrive", "arrive", "arrive", "cancel then release"])  # cancelled, then passed over
@example(["arrive", "arrive", "arrive", "release then cancel"])  # woken, then cancelled
@given(
    st.lists(
        st.sampled_from(
            ["arrive", "release", "cancel", "cancel then release", "release then cancel", "grow", "shrink"]
        ),
        max_size=40,
    )
)
def test_slots_go_in_arrival_order_and_none_is_lost_or_left_idle(steps: list[str]) -> None:
    asyncio.run(_slot_schedule(steps))


async def _slot_schedule(steps: list[str]) -> None:
    aimd = AimdLimit(maximum=4, minimum=1, limit=2, ramping_up=False)
    slots = AdaptiveSlots(aimd)
    callers: list[asyncio.Task[None]] = []
    granted: list[int] = []
    holding: list[int] = []

    async def caller(number: int) -> None:
        await slots.acquire()
        granted.append(number)
        holding.append(number)

    def cancel_the_first_waiting() -> None:
        waiting = [task for task in callers if not task.done() and not task.cancelling()]
        if waiting:
            waiting[0].cancel()

    def release() -> None:
        if holding:
            holding.pop(0)
            slots.release()

    for step in steps:
        if step == "arrive":
            callers.append(asyncio.create_task(caller(len(callers))))
        elif step == "grow":
            aimd.limit = min(aimd.maximum, aimd.limit + 1)
            slots.wake()
        elif step == "shrink":
            aimd.limit = max(aimd.minimum, aimd.limit - 1)
        else:
            for part in step.split(" then "):
                cancel_the_first_waiting() if part == "cancel" else release()
        for _ in range(3):
            await asyncio.sleep(0)
        assert granted == sorted(granted)  # first come, first served
        assert slots.in_flight == len(holding)  # a cancelled caller holds nothing
        if any(not task.done() for task in callers):
            assert slots.in_flight >= aimd.limit  # no slot idle while a caller waits
    for task in callers:
        task.cancel()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(outcome is None or isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)


async def test_a_throttled_call_is_not_sent_again_once_it_is_no_longer_wanted(slept: list[float]) -> None:
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
        await asyncio.wait_for(storage.delete(["a", "b"], gate=OPEN_GATE, may_start=lambda: wanted), 5)
    assert calls == [["a", "b"]]  # refused once, never sent again
    with pytest.raises(NotSent):  # and its one slot was given back
        await asyncio.wait_for(storage.delete(["c"], gate=OPEN_GATE, may_start=lambda: False), 1)
    assert len(slept) == 1  # the throttle's one wait


KEYS = [f"albums/7/photo-{number}.jpg" for number in range(10)]


class Checking:
    """A storage that can tell which keys exist, as S3 does with a request per key; it refuses its
    first ``refusals`` checks."""

    name = "photos"
    max_keys_per_call: int | None = None
    holds_manifests = False

    def __init__(self, refusals: int = 0) -> None:
        self.checked: list[list[str]] = []
        self.deleted: list[list[str]] = []
        self.refusals = refusals

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        self.deleted.append(list(keys))
        if len(self.deleted) <= self.refusals:
            raise StorageThrottled("503 Slow Down")
        return ChunkResult.from_reply(keys, keys, {})

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        self.checked.append(list(keys))
        if len(self.checked) <= self.refusals:
            raise StorageThrottled("503 Slow Down")
        return ExistsResult.from_reply(keys, existing=keys)

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_a_dry_runs_check_takes_a_call_token_per_key(slept: list[float]) -> None:
    """A chunk of N keys checked may be N requests (a HeadObject each): callsPerSecond counts them."""
    limiter = Limiter(8, rate_limit=RateLimit(calls_per_second=10), clock=FakeClock())
    storage = ConcurrencyLimited(Checking(), limiter, Metrics())
    assert (await storage.exists(KEYS, gate=OPEN_GATE)).existing == set(KEYS)
    assert slept == []  # the bucket's second's worth
    await storage.exists(KEYS, gate=OPEN_GATE)
    assert slept == [pytest.approx(1.0)]  # ten more, at ten a second


async def test_a_check_sent_again_after_a_throttle_takes_its_tokens_again(slept: list[float]) -> None:
    limiter = Limiter(8, rate_limit=RateLimit(calls_per_second=10), clock=FakeClock(), jitter=lambda: 0.5)
    backend = Checking(refusals=1)
    storage = ConcurrencyLimited(backend, limiter, Metrics())
    await storage.exists(KEYS, gate=OPEN_GATE)
    assert backend.checked == [KEYS, KEYS]
    assert slept == [pytest.approx(1.0)]  # the tokens of its ten requests, not only the throttle's 0.75 s


async def test_a_delete_sent_again_after_a_throttle_takes_its_tokens_again(slept: list[float]) -> None:
    limiter = Limiter(8, rate_limit=RateLimit(keys_per_second=10), clock=FakeClock(), jitter=lambda: 0.5)
    backend = Checking(refusals=1)
    storage = ConcurrencyLimited(backend, limiter, Metrics())
    assert (await storage.delete(KEYS, gate=OPEN_GATE)).deleted == set(KEYS)
    assert backend.deleted == [KEYS, KEYS]
    assert slept == [pytest.approx(1.0)]


class TestPacing:
    """A throttled storage is paced just under what it admitted (as the AWS SDKs' adaptive mode paces
    it), beside the in-flight limit; a cut takes effect at once."""

    def test_the_pace_starts_just_under_the_admitted_rate_and_grows_slowly(self) -> None:
        pace = PacedRate(admitted=20.0, cut_at=100.0)
        assert pace.rate(100.0) == pytest.approx(PACE_CUT_RATIO * 20.0)
        assert pace.rate(104.0) == pytest.approx(PACE_CUT_RATIO * 20.0 + 4 * PACE_GROWTH)

    def test_after_a_throttle_calls_are_paced_at_what_the_storage_admitted(self) -> None:
        clock = FakeClock()
        limiter = Limiter(
            16, adaptive=AdaptiveConcurrency(initial_requests=16), clock=clock, jitter=lambda: 0.0
        )
        for _ in range(20):  # admitted 20 calls in the last second
            clock.now += 0.05
            limiter.succeeded()
        limiter.throttled(retry_after=1.0)
        assert limiter.pacing is not None
        assert limiter.pacing.admitted == 20.0
        assert limiter.limit == 11  # the first throttle cuts the width too
        clock.now += 2.0
        limiter.throttled(retry_after=1.0)
        assert limiter.limit == 11  # later ones cut the pace only

    async def test_a_pace_grown_to_twice_its_cut_unrefused_ends(self) -> None:
        """A burst refused on an idle storage must not pace it for minutes: once the pace has doubled
        with no throttle, the storage is not paced any more (and a later throttle paces it again)."""
        clock = FakeClock()
        limiter = Limiter(
            16, adaptive=AdaptiveConcurrency(initial_requests=16), clock=clock, jitter=lambda: 0.0
        )
        for _ in range(4):  # an idle storage: 4 calls in the last second
            clock.now += 0.2
            limiter.succeeded()
        limiter.throttled(retry_after=1.0)
        assert limiter.pacing is not None
        cut = PACE_CUT_RATIO * limiter.pacing.admitted
        clock.now += 0.9 * cut / PACE_GROWTH  # grown, but not yet to twice the cut
        await limiter.pace()
        assert limiter.pacing is not None
        clock.now += 0.2 * cut / PACE_GROWTH
        await limiter.pace()
        assert limiter.pacing is None
        limiter.throttled(retry_after=1.0)
        assert limiter.pacing is not None

    async def test_a_cut_retimes_the_calls_already_waiting_for_the_pace(self) -> None:
        """Calls given a time at the old pace would go out as a burst right after a refusal: at a cut,
        each takes its time again, at the new rate."""
        clock = FakeClock()
        limiter = Limiter(
            16, adaptive=AdaptiveConcurrency(initial_requests=16), clock=clock, jitter=lambda: 0.0
        )
        limiter.throttled(retry_after=None)  # paced at the floor: nothing admitted yet
        slept: list[float] = []
        cut = asyncio.Event()
        real_sleep = asyncio.sleep

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 1:
                await cut.wait()  # held here while the storage throttles again
            else:
                clock.now += seconds
            await real_sleep(0)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncio, "sleep", sleep)
            waiting = asyncio.create_task(limiter.pace())
            await real_sleep(0)
            clock.now += MIN_COOLDOWN_SECONDS
            limiter.throttled(retry_after=None)  # a second cut while the call waits
            cut.set()
            await waiting
        assert len(slept) == 2  # it waited, then took its time again at the new pace

    @given(admitted=st.integers(1, 1000), elapsed=st.floats(0, 3600))
    def test_the_pace_never_falls_below_the_floor_and_only_grows_between_cuts(
        self, admitted: int, elapsed: float
    ) -> None:
        pace = PacedRate(admitted=float(admitted), cut_at=0.0)
        assert MIN_PACED_RATE <= pace.rate(elapsed) <= pace.rate(elapsed + 1)
