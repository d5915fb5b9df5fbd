"""Layer storage. Limits that protect a storage from the operator: token buckets (calls and keys per second)
and an adaptive in-flight limit (AIMD), shared by every object on the storage.

The pure parts (:class:`TokenBucket`, :class:`AimdLimit`) take the clock as an argument, so their
steps are unit-tested with a fake clock; :class:`AdaptiveSlots` is the asyncio side that makes calls
wait for a slot under the current limit.

How the limit moves, after Netflix's concurrency-limits AIMDLimit and TCP's congestion control:

- **Ramp-up**: a cold storage starts at ``initial`` calls in flight and, until its first throttle,
  gains one slot per successful call (the limit doubles every round trip), so that a storage that
  scales gradually (S3, GCS) is not hit at full width at once.
- **Additive increase**: after the first throttle, one slot more per ``limit`` successful calls
  (about one per round trip), and only while at least half the slots are in use (an idle limit proves
  nothing about what the storage takes).
- **Multiplicative decrease**: the first throttled call (429, 503, S3 SlowDown) cuts the limit to
  ``backoff_ratio`` of itself; later ones cut the pace (below) instead, at most once per ``cooldown``:
  the calls already in flight when the storage started refusing report the same congestion, and
  cutting for each would collapse the limit.
  The cooldown is the refused call's wait capped at the storage's ``unavailableAfterSeconds``, and at
  least a second: no ``Retry-After`` can switch the cuts off.
- Never above ``maximum`` (maxConcurrentRequests) nor below ``minimum``.

Slots alone cannot hold a storage that admits a rate, not a width (S3 and GCS refuse past a number of
calls a second): once it throttles, a storage is also **paced** (:class:`PacedRate`), as the AWS SDKs'
adaptive retry mode paces it, and later throttles cut the pace, not the slots. At a cut, the pace is
set to ``PACE_CUT_RATIO`` of what the storage admitted over the last second (or of the pace, if that
was higher), and grows by ``PACE_GROWTH`` calls a second every second, never beyond twice what the
storage is measured to admit: it settles just under the rate the storage takes, and probes above it
slowly. Once the pace has grown to ``PACE_RELEASE_RATIO`` times its rate at the last cut with no
throttle since, the throttling has passed (a burst on an idle storage, say): the storage is no longer
paced, and a later throttle paces it again. A cut takes effect at once: the calls already waiting
for the pace take their times again, at the new rate, so that no burst paced at the old rate follows
a refusal (a storage that counts refused calls in its window would go on refusing for a second).

A ``Retry-After`` is a hint from a peer: one of no wait (0, or a date in the past) or shorter than the
default wait counts for the default wait (about a second, jittered), so that refused calls never come
back as fast as the storage can refuse them.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from filecleanup.api.config import AdaptiveConcurrency, RateLimit

DEFAULT_BACKOFF_RATIO = 0.7  # botocore's adaptive mode cuts to 0.7 (CUBIC's beta), Netflix's AIMD to 0.9
# A bucket holds one second of its rate: a burst after an idle spell is at most a second's worth.
BURST_SECONDS = 1.0


@dataclass
class TokenBucket:
    """``rate`` tokens a second, holding at most ``capacity``. A reservation larger than what is there
    goes into debt (a chunk of 100 keys on a 50 keys/s bucket waits 2 s), so the long-run rate holds
    for any chunk size."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float) -> TokenBucket:
        capacity = max(1.0, rate * BURST_SECONDS)
        return cls(rate=rate, capacity=capacity, tokens=capacity, updated=now)

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens; the seconds to wait before using them (0 when they were there)."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class AimdLimit:
    """The number of calls a storage may have in flight, moved by what its calls report."""

    maximum: int
    minimum: int = 1
    limit: int = 1
    backoff_ratio: float = DEFAULT_BACKOFF_RATIO
    ramping_up: bool = True  # until the first throttle: one slot more per success
    successes: int = 0  # since the last change, counting towards the next additive step
    quiet_until: float = -math.inf  # throttles before this are the congestion already cut for
    throttled_at_minimum_since: float | None = None  # refused at the minimum, with no success since

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(f"minimum {self.minimum} must be between 1 and maximum {self.maximum}")
        self.limit = min(self.maximum, max(self.minimum, self.limit))

    def succeeded(self, in_flight: int) -> None:
        """A call succeeded while ``in_flight`` calls (itself included) were in flight."""
        self.throttled_at_minimum_since = None
        if in_flight * 2 < self.limit:
            return
        self.successes += 1
        if self.ramping_up or self.successes >= self.limit:
            self.limit = min(self.maximum, self.limit + 1)
            self.successes = 0

    def throttled(self, now: float, cooldown: float, *, cut: bool = True) -> None:
        """A call was refused for overload: cut the limit, unless it was cut less than a cooldown ago
        (or ``cut`` is false: the storage is paced, and the pace is what is cut)."""
        if now >= self.quiet_until:
            self.ramping_up = False
            if cut:
                self.limit = max(self.minimum, math.floor(self.limit * self.backoff_ratio))
            self.successes = 0
            self.quiet_until = now + cooldown
        if (self.limit == self.minimum or not cut) and self.throttled_at_minimum_since is None:
            self.throttled_at_minimum_since = now

    def throttled_at_minimum_for(self, now: float) -> float:
        """How long calls have been refused at the minimum limit without a success in between."""
        since = self.throttled_at_minimum_since
        return 0.0 if since is None else now - since


@dataclass
class AdaptiveSlots:
    """Slots for calls in flight under a limit that moves: a call waits, first come, first served,
    until fewer than ``limit.limit`` calls are in flight. A freed slot is handed to the longest waiter
    (counted as in flight from then on), so a caller that arrives between the handover and the
    waiter's wake-up finds it taken and queues behind. A lowered limit takes effect as calls finish;
    calls already in flight are never interrupted."""

    limit: AimdLimit
    in_flight: int = 0
    _waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)

    async def acquire(self) -> None:
        if not self._waiters and self.in_flight < self.limit.limit:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.wake()  # the limit may have grown since the last wake
        try:
            await waiter  # resolved with the slot already counted for this call
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot and cancelled at once: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Hand the free slots (also after the limit grew) to the longest waiters."""
        while self._waiters and self.in_flight < self.limit.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is passed over
                waiter.set_result(None)
                self.in_flight += 1


PACE_CUT_RATIO = 0.9  # a cut paces at this share of what the storage admitted
PACE_GROWTH = 0.5  # calls a second, added to the pace every second without a throttle
MIN_PACED_RATE = 0.5  # calls a second: a storage that admitted nothing is still asked now and then
PACE_RELEASE_RATIO = 2.0  # the pace grown to this many times its cut, unrefused: pacing ends
PACE_BURST_SECONDS = 0.1  # a paced storage gets its calls spread out, not in bursts of a second
RATE_WINDOW_SECONDS = 1.0  # the admitted rate is measured over this sliding window


@dataclass
class PacedRate:
    """The rate a throttled storage is paced at: ``PACE_CUT_RATIO`` of ``admitted`` (what it admitted
    in the second before it throttled) at ``cut_at``, then ``PACE_GROWTH`` calls a second more every
    second."""

    admitted: float
    cut_at: float

    def rate(self, now: float) -> float:
        grown = PACE_GROWTH * max(0.0, now - self.cut_at)
        return max(MIN_PACED_RATE, PACE_CUT_RATIO * self.admitted + grown)


@dataclass
class AdmittedCalls:
    """When the storage admitted its last calls: the rate over the last RATE_WINDOW_SECONDS."""

    times: collections.deque[float] = field(default_factory=collections.deque)

    def add(self, now: float) -> None:
        self.times.append(now)
        self._forget(now)

    def rate(self, now: float) -> float:
        self._forget(now)
        return len(self.times) / RATE_WINDOW_SECONDS

    def _forget(self, now: float) -> None:
        while self.times and self.times[0] <= now - RATE_WINDOW_SECONDS:
            self.times.popleft()


# Without a Retry-After, or with one that asks for less, a throttled call waits about this long
# (jittered between half of it and all of it) before it is sent again.
THROTTLED_WAIT_SECONDS = 1.0
# A cut covers the throttles of at least this long after it (the calls in flight when it was made).
MIN_COOLDOWN_SECONDS = 1.0


class Limiter:
    """One storage's limits, shared by every object on it: token buckets, then a slot under the
    adaptive in-flight limit. Without ``adaptive`` the limit stays at ``maximum``."""

    def __init__(
        self,
        maximum: int,
        *,
        rate_limit: RateLimit | None = None,
        adaptive: AdaptiveConcurrency | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._jitter = jitter
        now = clock()
        rate_limit = rate_limit or RateLimit()
        self._calls = (
            None
            if rate_limit.calls_per_second is None
            else TokenBucket.full(rate_limit.calls_per_second, now)
        )
        self._keys = (
            None if rate_limit.keys_per_second is None else TokenBucket.full(rate_limit.keys_per_second, now)
        )
        if adaptive is None:
            self.aimd = AimdLimit(maximum=maximum, minimum=maximum, limit=maximum, ramping_up=False)
            self._unavailable_after = AdaptiveConcurrency().unavailable_after_seconds
        else:
            self.aimd = AimdLimit(
                maximum=maximum, minimum=adaptive.min_requests, limit=adaptive.initial_requests
            )
            self._unavailable_after = adaptive.unavailable_after_seconds
        self._slots = AdaptiveSlots(self.aimd)
        self._adaptive = adaptive is not None
        self._admitted = AdmittedCalls()
        self.pacing: PacedRate | None = None
        self._pace: TokenBucket | None = None
        self._cuts = 0  # a call that waited for the pace through a cut takes its time again

    @property
    def limit(self) -> int:
        return self.aimd.limit

    def reserve(self, keys: int, calls: int = 1) -> float:
        """Take the configured buckets' tokens for ``calls`` calls of ``keys`` keys in all; the seconds
        to wait before sending them (0 when the tokens were there). The pace is :meth:`pace`'s."""
        now = self._clock()
        waits = [
            bucket.reserve(amount, now)
            for bucket, amount in ((self._calls, calls), (self._keys, keys))
            if bucket
        ]
        return max(waits, default=0.0)

    def _follow_pacing(self, now: float) -> None:
        """The pace bucket's rate, as the curve has it now, but at most twice what the storage admits
        now (as botocore caps it: the curve never runs far ahead of what is measured), and never less
        than what it admitted at the cut (a storage idle since is not paced below that)."""
        if self.pacing is None or self._pace is None:
            return
        if self.pacing.rate(now) >= PACE_RELEASE_RATIO * PACE_CUT_RATIO * self.pacing.admitted:
            self.pacing = self._pace = None  # grown unrefused far past its cut: the throttling has passed
            return
        measured = 2 * self._admitted.rate(now)
        rate = min(self.pacing.rate(now), max(self.pacing.admitted, measured))
        self._pace.reserve(0, now)  # the tokens earned at the old rate, up to now
        self._pace.rate, self._pace.capacity = rate, max(1.0, rate * PACE_BURST_SECONDS)

    async def acquire(self, keys: int, calls: int = 1) -> None:
        """Wait for the configured buckets' tokens (``calls`` calls, ``keys`` keys), then for a slot,
        then for the pace. The pace is taken last, with the slot held: a call queued for a slot before
        the storage throttled is paced like any other."""
        wait = self.reserve(keys, calls)
        if wait > 0:
            await asyncio.sleep(wait)
        await self._slots.acquire()
        try:
            await self.pace(calls)
        except asyncio.CancelledError:
            self._slots.release()
            raise

    async def pace(self, calls: int = 1) -> None:
        """Wait for the pace of a throttled storage (none while it is not paced)."""
        while True:
            cuts = self._cuts
            now = self._clock()
            self._follow_pacing(now)
            wait = self._pace.reserve(calls, now) if self._pace else 0.0
            if wait <= 0:
                return
            await asyncio.sleep(wait)
            if self._cuts == cuts:
                return

    async def take_slot(self) -> None:
        """A slot alone, for a call whose tokens are already taken (one sent again)."""
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    def succeeded(self) -> None:
        """The call was not throttled (whatever it said about the keys)."""
        self._admitted.add(self._clock())
        self.aimd.succeeded(self._slots.in_flight)
        self._slots.wake()

    def throttled(self, retry_after: float | None) -> float | None:
        """Seconds before the refused call is sent again: its ``Retry-After``, but never less than the
        default jittered wait (a hint of 0, or of a date in the past, would have it sent again at once);
        None once the storage has refused every call, at the minimum limit or while paced, for longer
        than the bound (or asks for a longer wait than that): then it is unavailable. The cut's
        cooldown is the wait, capped at the bound, so that no hint stops the cuts."""
        now = self._clock()
        jitter = self._jitter()
        default = THROTTLED_WAIT_SECONDS * (0.5 + 0.5 * jitter)
        # "not > 0" is also true for NaN: no usable hint.
        hinted = retry_after is not None and retry_after > default
        wait = retry_after if hinted and retry_after is not None else default
        bound = self._unavailable_after
        paced = self.pacing is not None  # the pace is the control; the width of the slots stays
        if self._adaptive and now >= self.aimd.quiet_until:
            self._pace_at_admitted(now)
        self.aimd.throttled(now, cooldown=max(min(wait, bound), MIN_COOLDOWN_SECONDS), cut=not paced)
        if wait > bound or self.aimd.throttled_at_minimum_for(now) > bound:
            return None
        # A hint is a least wait: the calls refused together are spread over half as long again, so
        # that they do not all come back in the same instant.
        return min(bound, wait * (1 + jitter / 2)) if hinted else wait

    def _pace_at_admitted(self, now: float) -> None:
        """A cut: from now on, calls are paced just under what the storage admitted in the last
        second, and every call waiting for the pace takes its time again, at the new rate."""
        measured = self._admitted.rate(now)
        admitted = max(measured, self.pacing.rate(now)) if self.pacing else measured
        self.pacing = PacedRate(admitted=max(MIN_PACED_RATE, admitted), cut_at=now)
        rate = self.pacing.rate(now)
        self._pace = TokenBucket(
            rate=rate, capacity=max(1.0, rate * PACE_BURST_SECONDS), tokens=0.0, updated=now
        )
        self._cuts += 1
