"""Layer storage. Keys the storage holds: under a legal hold or a retention (S3 Object Lock), a lawful
reason not to erase yet, not a permission bug. A held key is not retried each round and not failed for
good: once only held keys are left, the object waits in phase Held until the earliest retention
passes (a legal hold is looked at again every HOLD_RECHECK_SECONDS), then sends them again.

A held key's error says so in a fixed form, which is how status keeps it between runs:
``held: legal hold`` or ``held: COMPLIANCE retention until 2026-12-05T04:46:35Z``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

HELD_PREFIX = "held: "
LEGAL_HOLD = f"{HELD_PREFIX}legal hold"
UNTIL = " retention until "
# A legal hold has no end date: it is looked at again this often. A retention's end is waited for, but
# never longer than this at a time (its date is looked at again then, and may have been extended).
HOLD_RECHECK_SECONDS = 86_400.0


def held_error(*, legal_hold: bool, mode: str | None, until: datetime.datetime | None) -> str:
    """The error of a held key: a legal hold wins, as it outlasts any retention."""
    if legal_hold or until is None:
        return LEGAL_HOLD
    stamp = until.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{HELD_PREFIX}{mode or 'object lock'}{UNTIL}{stamp}"


def is_held(error: str) -> bool:
    return error.startswith(HELD_PREFIX)


def held_until(error: str) -> datetime.datetime | None:
    """When a held key's retention ends; None for a legal hold, or an error that names no date."""
    if not is_held(error) or UNTIL not in error:
        return None
    stamp = error.rsplit(UNTIL, 1)[1]
    if not stamp.endswith("Z"):
        return None
    try:
        return datetime.datetime.strptime(stamp.removesuffix("Z") + "+0000", "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


def release_in(errors: Iterable[str], now: datetime.datetime) -> float:
    """Seconds until the held keys (``errors``) should be sent again: the earliest retention's end,
    at most HOLD_RECHECK_SECONDS away (and at least a second)."""
    ends = [held_until(error) for error in errors]
    dated = [end for end in ends if end is not None]
    if not dated:
        return HOLD_RECHECK_SECONDS
    return max(1.0, min(HOLD_RECHECK_SECONDS, (min(dated) - now).total_seconds()))
