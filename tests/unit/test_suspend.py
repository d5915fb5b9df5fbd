"""Suspend and the operator-wide pause: the decisions and the pause file's reading."""

from __future__ import annotations

from filecleanup.api.models import Condition, ConditionType, FileCleanupSpec, FileCleanupStatus, Phase, Reason
from filecleanup.controller.pause import paused_storages
from filecleanup.decide import outcomes
from filecleanup.decide import plan as planning
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.plan import Action, Run, Suspend
from filecleanup.decide.progress import Progress
from filecleanup.decide.status import suspended_status
from tests.unit.decisions import NOW, STORAGES, answer, keys, plan, spec, status_after


def test_a_suspended_spec_or_a_paused_storage_makes_no_calls() -> None:
    assert plan(spec(keys(3), suspend=True), FileCleanupStatus()) == Suspend(
        "photos", Reason.SUSPENDED, outcomes.SUSPENDED_MESSAGE
    )
    paused = plan_paused(spec(keys(3)), FileCleanupStatus(), frozenset({"photos"}))
    assert isinstance(paused, Suspend)
    assert paused.reason == Reason.OPERATOR_PAUSED
    assert isinstance(plan_paused(spec(keys(3)), FileCleanupStatus(), frozenset({"videos"})), Run)


def plan_paused(the_spec: FileCleanupSpec, status: FileCleanupStatus, paused: frozenset[str]) -> Action:
    return planning.plan(
        the_spec, status, namespace="ns", storages=STORAGES, default_storage="photos", now=NOW, paused=paused
    )


def condition(status: FileCleanupStatus, condition_type: ConditionType) -> Condition:
    found = status.condition(condition_type)
    assert found is not None
    return found


def test_a_round_stopped_by_suspension_keeps_its_keys_and_spends_no_budget() -> None:
    the_spec = spec(keys(20), chunkSize=5)
    progress = Progress.start(the_spec)
    answer(progress, progress.chunks()[0])
    stopped = outcomes.stopped_early(
        the_spec, outcomes.Tally.of(progress), suspension=Reason.SUSPENDED, storage="photos"
    )
    assert stopped is not None
    assert (stopped.phase, stopped.delay) == (Phase.SUSPENDED, None)
    status = status_after(progress, stopped)
    assert (status.phase, status.deleted, status.pending_indexes, status.retries) == (
        Phase.SUSPENDED,
        5,
        "5-19",
        0,
    )
    assert condition(status, ConditionType.SUSPENDED).status == "True"
    assert condition(status, ConditionType.PROGRESSING).status == "False"
    resumed = Progress.resume(the_spec, status)
    assert list(resumed.pending) == list(range(5, 20))
    running = status_after(resumed, Outcome(Phase.IN_PROGRESS, Reason.DELETING, "deleting"), status)
    resumed_condition = condition(running, ConditionType.SUSPENDED)
    assert (resumed_condition.status, resumed_condition.reason) == ("False", Reason.RESUMED)


def test_a_pause_rechecks_and_a_suspension_waits_for_a_change() -> None:
    the_spec = spec(keys(20), chunkSize=5)
    progress = Progress.start(the_spec)
    paused = outcomes.stopped_early(
        the_spec, outcomes.Tally.of(progress), suspension=Reason.OPERATOR_PAUSED, storage="photos"
    )
    assert paused is not None
    assert paused.delay == outcomes.PAUSE_RECHECK_SECONDS


def test_suspended_status_keeps_the_checkpoint() -> None:
    previous = FileCleanupStatus(phase=Phase.IN_PROGRESS, total=3, deleted=1, pending_indexes="1-2")
    status = suspended_status(
        previous, storage="photos", reason=Reason.OPERATOR_PAUSED, message="paused", generation=2, now=NOW
    )
    assert (status.phase, status.deleted, status.pending_indexes) == (Phase.SUSPENDED, 1, "1-2")
    assert condition(status, ConditionType.SUSPENDED).reason == Reason.OPERATOR_PAUSED


def test_the_pause_file_names_storages_or_all() -> None:
    storages = ["photos", "videos", "archive"]
    assert paused_storages("", storages) == frozenset()
    assert paused_storages("all\n", storages) == frozenset(storages)
    assert paused_storages("photos, archive\nunknown", storages) == {"photos", "archive"}
