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
- **Multiplicative decrease**: a throttled call (429, 503, S3 SlowDown) cuts the limit to
  ``backoff_ratio`` of itself, at most once per ``cooldown``: the calls already in flight when the
  storage started refusing report the same congestion, and cutting for each would collapse the limit.
  The cooldown is the refused call's wait capped at the storage's ``unavailableAfterSeconds``, and at
  least a second: no ``Retry-After`` can switch the cuts off.
- Never above ``maximum`` (maxConcurrentRequests) nor below ``minimum``.

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

    def throttled(self, now: float, cooldown: float) -> None:
        """A call was refused for overload: cut the limit, unless it was cut less than a cooldown ago."""
        if now >= self.quiet_until:
            self.ramping_up = False
            self.limit = max(self.minimum, math.floor(self.limit * self.backoff_ratio))
            self.successes = 0
            self.quiet_until = now + cooldown
        if self.limit == self.minimum and self.throttled_at_minimum_since is None:
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

    @property
    def limit(self) -> int:
        return self.aimd.limit

    def reserve(self, keys: int, calls: int = 1) -> float:
        """Take the buckets' tokens for ``calls`` calls of ``keys`` keys in all; the seconds to wait
        before sending them (0 when the tokens were there)."""
        now = self._clock()
        waits = [
            bucket.reserve(amount, now)
            for bucket, amount in ((self._calls, calls), (self._keys, keys))
            if bucket
        ]
        return max(waits, default=0.0)

    async def acquire(self, keys: int, calls: int = 1) -> None:
        """Wait for the buckets' tokens (``calls`` calls, ``keys`` keys), then for a slot."""
        wait = self.reserve(keys, calls)
        if wait > 0:
            await asyncio.sleep(wait)
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()

    def succeeded(self) -> None:
        """The call was not throttled (whatever it said about the keys)."""
        self.aimd.succeeded(self._slots.in_flight)
        self._slots.wake()

    def throttled(self, retry_after: float | None) -> float | None:
        """Seconds before the refused call is sent again: its ``Retry-After``, but never less than the
        default jittered wait (a hint of 0, or of a date in the past, would have it sent again at once);
        None once the storage has refused calls at the minimum limit for longer than the bound (or
        asks for a longer wait than that): then it is unavailable. The cut's cooldown is the wait,
        capped at the bound, so that no hint stops the limit's cuts."""
        now = self._clock()
        default = THROTTLED_WAIT_SECONDS * (0.5 + 0.5 * self._jitter())
        # "not > 0" is also true for NaN: no usable hint.
        wait = default if retry_after is None or not retry_after > 0 else max(retry_after, default)
        bound = self._unavailable_after
        self.aimd.throttled(now, cooldown=max(min(wait, bound), MIN_COOLDOWN_SECONDS))
        if wait > bound or self.aimd.throttled_at_minimum_for(now) > bound:
            return None
        return wait
