"""Keys the storage holds: their errors' fixed form, when they are sent again, and the decisions that
keep an object with only held keys in phase Held instead of Failed."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.models import FileCleanupStatus, Phase, Reason
from filecleanup.decide import outcomes
from filecleanup.decide.plan import Run, Wait
from filecleanup.decide.progress import Progress
from filecleanup.storage import holds
from filecleanup.storage.base import ChunkResult
from tests.unit.decisions import NOW, keys, plan, spec, status_after

LATER = NOW + datetime.timedelta(hours=3)


@given(
    until=st.datetimes(
        min_value=datetime.datetime(2000, 1, 1),  # noqa: DTZ001  (hypothesis adds the zone)
        max_value=datetime.datetime(2999, 1, 1),  # noqa: DTZ001
        timezones=st.just(datetime.UTC),
    ).map(lambda moment: moment.replace(microsecond=0)),
    mode=st.sampled_from(["COMPLIANCE", "GOVERNANCE", None]),
)
def test_a_retentions_end_survives_its_error_text(until: datetime.datetime, mode: str | None) -> None:
    error = holds.held_error(legal_hold=False, mode=mode, until=until)
    assert holds.is_held(error)
    assert holds.held_until(error) == until
    assert holds.held_error(legal_hold=True, mode=mode, until=until) == holds.LEGAL_HOLD


@given(st.text(max_size=80))
def test_any_error_text_reads_as_held_or_not_never_an_exception(error: str) -> None:
    until = holds.held_until(error)
    assert until is None or holds.is_held(error)


def test_held_keys_go_again_at_the_earliest_end_within_a_day() -> None:
    soon = holds.held_error(legal_hold=False, mode="COMPLIANCE", until=LATER)
    late = holds.held_error(legal_hold=False, mode="COMPLIANCE", until=NOW + datetime.timedelta(days=30))
    assert holds.release_in([late, soon, holds.LEGAL_HOLD], NOW) == 3 * 3600
    assert holds.release_in([late], NOW) == holds.HOLD_RECHECK_SECONDS
    assert holds.release_in([holds.LEGAL_HOLD], NOW) == holds.HOLD_RECHECK_SECONDS
    assert holds.release_in([soon], LATER + datetime.timedelta(seconds=5)) == 1.0  # over: at once


def answered(the_keys: list[str], errors: dict[str, str], permanent: set[str]) -> Progress:
    progress = Progress.start(spec(the_keys, maxRetries=2))
    for chunk in progress.chunks():
        requested = progress.chunk_keys(chunk)
        confirmed = [key for key in requested if key not in errors]
        progress.record(
            chunk, ChunkResult.from_reply(requested, confirmed, errors, permanent & set(requested))
        )
    return progress


def test_only_held_keys_left_is_held_not_failed() -> None:
    the_keys = keys(4)
    held = holds.held_error(legal_hold=False, mode="COMPLIANCE", until=LATER)
    progress = answered(
        the_keys, {the_keys[1]: held, the_keys[2]: holds.LEGAL_HOLD}, {the_keys[1], the_keys[2]}
    )
    outcome = outcomes.after_round(spec(the_keys), outcomes.Tally.of(progress), 0.0, now=NOW)
    assert (outcome.phase, outcome.reason, outcome.delay) == (Phase.HELD, Reason.KEYS_HELD, 3 * 3600)
    assert "2 of 4 keys are held by the storage" in outcome.message


def test_a_held_key_beside_another_failure_is_decided_by_the_other() -> None:
    the_keys = keys(3)
    errors = {the_keys[0]: holds.LEGAL_HOLD, the_keys[1]: "AccessDenied: Access Denied."}
    failed_for_good = answered(the_keys, errors, {the_keys[0], the_keys[1]})
    outcome = outcomes.after_round(spec(the_keys), outcomes.Tally.of(failed_for_good), 0.0, now=NOW)
    assert (outcome.phase, outcome.reason) == (Phase.FAILED, Reason.PERMANENT_ERRORS)
    retryable = answered(the_keys, {the_keys[0]: holds.LEGAL_HOLD, the_keys[1]: "SlowDown"}, {the_keys[0]})
    outcome = outcomes.after_round(spec(the_keys), outcomes.Tally.of(retryable), 0.0, now=NOW)
    assert outcome.phase == Phase.BACKOFF


def test_a_held_object_waits_then_sends_only_its_held_keys_again() -> None:
    the_keys = keys(4)
    errors = {the_keys[1]: holds.LEGAL_HOLD, the_keys[3]: holds.LEGAL_HOLD}
    progress = answered(the_keys, errors, set(errors))
    outcome = outcomes.after_round(spec(the_keys), outcomes.Tally.of(progress), 0.0, now=NOW)
    status = status_after(progress, outcome)
    assert (status.phase, status.next_retry_time) == (Phase.HELD, NOW + datetime.timedelta(days=1))
    assert isinstance(plan(spec(the_keys), status, now=NOW + datetime.timedelta(hours=1)), Wait)
    again = plan(spec(the_keys), status, now=NOW + datetime.timedelta(days=1))
    assert isinstance(again, Run)
    assert not again.starting
    assert list(again.progress.pending) == [1, 3]
    assert (again.progress.deleted, again.progress.permanent) == (2, {})
    assert again.progress.counts.failed == 2  # not yet answered again: still failed, as in a retry


def test_a_held_object_is_not_late_for_its_erasure_deadline() -> None:
    from filecleanup.api.metrics import ObjectCounts  # noqa: PLC0415  (only this test needs it)

    counts = ObjectCounts(clock=NOW.timestamp)
    counts.seen("held", Phase.HELD.value, 1, NOW.timestamp() - 40 * 86_400)
    counts.seen("late", Phase.BACKOFF.value, 1, NOW.timestamp() - 60)
    (family,) = [
        family for family in counts.collect() if family.name == "filecleanup_oldest_unfinished_seconds"
    ]
    assert family.samples[0].value == 60
    assert FileCleanupStatus(phase=Phase.HELD).phase.finished is False
