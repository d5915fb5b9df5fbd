"""What a leader-election candidate does with the Lease it read."""

from __future__ import annotations

import datetime

import pytest

from filecleanup.controller.leader import Decision, LeaseRecord, LeaseTiming, decide

NOW = datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)


def record(holder: str | None, duration: int | None = 15) -> LeaseRecord:
    return LeaseRecord(holder, NOW, duration)


@pytest.mark.parametrize(
    ("lease", "unchanged_for", "expected"),
    [
        (None, 0.0, Decision.CREATE),
        (record("me"), 0.0, Decision.RENEW),
        (record("me"), 999.0, Decision.RENEW),
        (record(None), 0.0, Decision.TAKE),  # released on a graceful stop
        (record(""), 0.0, Decision.TAKE),
        (record("other"), 14.9, Decision.WAIT),
        (record("other"), 15.0, Decision.TAKE),  # not renewed for its lease duration: dead
        (record("other", duration=None), 29.0, Decision.WAIT),  # no duration: ours (30 s here)
        (record("other", duration=None), 30.0, Decision.TAKE),
        (record("other", duration=1), 1.0, Decision.TAKE),
    ],
)
def test_decide(lease: LeaseRecord | None, unchanged_for: float, expected: Decision) -> None:
    assert decide(lease, identity="me", unchanged_for=unchanged_for, default_duration=30.0) is expected


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [(10, 10, 2), (15, 2, 2), (15, 10, 0), (5, 10, 2)]
)
def test_timing_must_leave_room_to_renew(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        LeaseTiming(duration, deadline, retry)
