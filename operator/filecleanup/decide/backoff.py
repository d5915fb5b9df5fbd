"""Layer decide. How long to wait before trying again: doubling, capped, and jittered so that many objects
failing together do not all come back in the same second. The outbox and the reconciler share the formula."""

from __future__ import annotations

from filecleanup.api.models import Backoff

JITTER_FRACTION = 0.2
MAX_RETRY_AFTER_SECONDS = 3600.0
MAX_DOUBLINGS = 60  # 2**60 s is far past any cap: more doublings would only overflow


def doubling(initial: float, cap: float, doublings: int) -> float:
    """``initial`` doubled ``doublings`` times (none for 0 or less), never more than ``cap``."""
    return min(cap, initial * 2.0 ** min(max(0, doublings), MAX_DOUBLINGS))


def retry_delay(backoff: Backoff, retry_round: int, jitter: float) -> float:
    """Seconds before retry round ``retry_round`` (1 for the first retry): doubling, capped, jittered.

    ``jitter`` is a sample from [0, 1); it shortens the delay by up to 20 %, so the cap still holds.
    """
    return _jittered(doubling(backoff.initial_seconds, backoff.max_seconds, retry_round - 1), jitter)


def unavailable_delay(
    backoff: Backoff, unavailable_for: float, retry_after: float | None, jitter: float
) -> float:
    """Seconds to wait while the storage is unavailable.

    ``Retry-After`` wins when the storage sent one. Otherwise the wait grows with how long the
    storage has been unavailable: waiting as long again doubles the total each time, up to the cap.
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), MAX_RETRY_AFTER_SECONDS)
    waited = max(float(backoff.initial_seconds), unavailable_for)
    return _jittered(min(float(backoff.max_seconds), waited), jitter)


def _jittered(seconds: float, jitter: float) -> float:
    """Shortened by up to 20 % (``jitter`` is from [0, 1))."""
    return seconds * (1.0 - JITTER_FRACTION * jitter)
