"""The grace period (spec.startAfter): nothing is sent before it, the wait is said once, and the end of
the wait is written before the first call, so that an object cancelled while it waits has sent nothing."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.models import ConditionType, FileCleanupSpec, FileCleanupStatus, Phase, Reason
from filecleanup.api.redaction import redact
from filecleanup.decide import outcomes
from filecleanup.decide.plan import DryRun, Grace, Reject, Run, Suspend
from filecleanup.decide.status import grace_status, suspended_status
from filecleanup.run.context import ObjectContext
from tests.unit.decisions import NOW, keys, plan, spec
from tests.unit.test_reconciler import Events, FakeSink, FakeStorage, context, reconciler

LATER = NOW + datetime.timedelta(hours=2)


def test_an_object_waits_until_its_start_and_then_runs() -> None:
    waiting = plan(spec(keys(3), startAfter=LATER.isoformat()), FileCleanupStatus())
    assert waiting == Grace("photos", LATER, 7200.0)
    started = plan(spec(keys(3), startAfter=LATER.isoformat()), FileCleanupStatus(), now=LATER)
    assert isinstance(started, Run)
    assert started.starting


@given(offset=st.integers(min_value=-(10**6), max_value=10**6))
def test_nothing_runs_before_the_start_whatever_the_status(offset: int) -> None:
    start = NOW + datetime.timedelta(milliseconds=offset)
    the_spec = spec(keys(3), startAfter=start.isoformat())
    for status in (
        FileCleanupStatus(),
        FileCleanupStatus(phase=Phase.PENDING, start_time=NOW),  # left by a suspension
        FileCleanupStatus(phase=Phase.IN_PROGRESS, total=3, pending_indexes="0-2", start_time=NOW),
    ):
        action = plan(the_spec, status)
        assert isinstance(action, Grace) == (start > NOW)
        if isinstance(action, Grace):
            assert action.seconds == (start - NOW).total_seconds() > 0


def test_a_dry_run_waits_too_and_a_suspension_or_a_rejection_comes_first() -> None:
    later = LATER.isoformat()
    assert isinstance(plan(spec(keys(3), startAfter=later, dryRun=True), FileCleanupStatus()), Grace)
    assert isinstance(plan(spec(keys(3), startAfter=later), FileCleanupStatus(), now=LATER), Run)
    assert isinstance(
        plan(spec(keys(3), startAfter=later, dryRun=True), FileCleanupStatus(), now=LATER), DryRun
    )
    assert isinstance(plan(spec(keys(3), startAfter=later, suspend=True), FileCleanupStatus()), Suspend)
    rejected = plan(spec(["elsewhere/1"], startAfter=later, storage="tenants"), FileCleanupStatus(), "team-a")
    assert isinstance(rejected, Reject)
    assert rejected.reason == Reason.FORBIDDEN


def test_the_waiting_status_is_pending_not_started_and_names_the_time() -> None:
    outcome = outcomes.grace_period(LATER, 7200.0)
    previous = suspended_status(  # suspended while it waited, then resumed
        FileCleanupStatus(), storage="photos", reason=Reason.SUSPENDED, message="s", generation=2, now=NOW
    )
    assert previous.start_time == NOW
    status = grace_status(previous, storage="photos", outcome=outcome, generation=3, now=NOW)
    progressing = status.condition(ConditionType.PROGRESSING)
    assert progressing is not None
    assert (status.phase, status.start_time, status.storage, status.observed_generation) == (
        Phase.PENDING,
        None,
        "photos",
        3,
    )
    assert (progressing.status, progressing.reason) == ("True", Reason.GRACE_PERIOD)
    assert progressing.message == redact(outcome.message)
    assert "2026-11-26T14:00:00+00:00" in progressing.message
    suspended = status.condition(ConditionType.SUSPENDED)
    assert suspended is not None
    assert (suspended.status, suspended.reason) == ("False", Reason.RESUMED)


@dataclass
class SentAtWrite(FakeSink):
    """Records how many keys had been sent when each status was written."""

    sent_at_write: list[int] = field(default_factory=list)

    async def write(self, status: FileCleanupStatus) -> FileCleanupSpec | None:
        self.sent_at_write.append(len(self.storage.sent) if self.storage else 0)
        return await super().write(status)


def waiting_context(sink: FakeSink, events: Events, now: datetime.datetime) -> ObjectContext:
    found = context(sink, events, sink.written[-1] if sink.written else None, startAfter=LATER.isoformat())
    return ObjectContext(**{**found.__dict__, "clock": lambda: now})


async def test_the_wait_is_said_once_sends_nothing_and_its_end_is_written_before_the_first_call() -> None:
    storage = FakeStorage()
    sink, events = SentAtWrite(storage=storage), Events()
    run = reconciler(storage)
    first = await run.run(waiting_context(sink, events, NOW))
    again = await run.run(waiting_context(sink, events, NOW + datetime.timedelta(hours=1)))
    assert (first.requeue_after, again.requeue_after) == (7200.0, 3600.0)
    assert [status.phase for status in sink.written] == [Phase.PENDING]  # the second run wrote nothing
    assert [(kind, reason) for kind, reason, _ in events] == [("Normal", Reason.GRACE_PERIOD)]
    assert storage.sent == []
    done = await run.run(waiting_context(sink, events, LATER))
    assert done.requeue_after is None
    assert [status.phase for status in sink.written] == [Phase.PENDING, Phase.IN_PROGRESS, Phase.SUCCEEDED]
    assert sink.sent_at_write == [0, 0, 10]
    assert sink.written[-1].deleted == 10
