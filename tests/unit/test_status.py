"""The status built from a decision: conditions, counts, redrives."""

from __future__ import annotations

import datetime

from filecleanup.api import redaction
from filecleanup.api.models import (
    ConditionType,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
    Reason,
)
from filecleanup.decide import outcomes
from filecleanup.decide import status as statuses
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.plan import Finished, Reject, Run
from filecleanup.decide.progress import Progress
from tests.unit.decisions import NOW, answer_round, conclude, plan, spec, status_after


class TestStatus:
    def test_succeeded_status_sets_complete_and_clears_progress(self) -> None:
        progress = Progress.start(spec(["a"]))
        answer_round(progress)
        status = status_after(progress, conclude(spec(["a"]), progress, jitter=0))
        assert (status.phase, status.total, status.deleted, status.failed) == (Phase.SUCCEEDED, 1, 1, 0)
        complete = status.condition(ConditionType.COMPLETE)
        progressing = status.condition(ConditionType.PROGRESSING)
        assert complete is not None and complete.status == "True" and complete.observed_generation == 1
        assert progressing is not None and progressing.status == "False"
        assert status.completion_time == NOW
        assert status.next_retry_time is None

    def test_backoff_status_names_the_next_retry_time(self) -> None:
        progress = Progress.start(spec(["a"]))
        answer_round(progress, failing={"a"})
        status = status_after(progress, conclude(spec(["a"]), progress, jitter=0))
        assert status.phase == Phase.BACKOFF
        assert status.next_retry_time == NOW + datetime.timedelta(seconds=5)
        assert status.completion_time is None

    def test_transition_time_moves_only_when_status_or_reason_changes(self) -> None:
        progress = Progress.start(spec(["a"]))
        deleting = Outcome(Phase.IN_PROGRESS, Reason.DELETING, "deleting")
        first = status_after(progress, deleting)
        later = statuses.next_status(
            first,
            progress=progress,
            storage="photos",
            outcome=deleting,
            generation=1,
            now=NOW + datetime.timedelta(minutes=1),
        )
        progressing = later.condition(ConditionType.PROGRESSING)
        assert progressing is not None and progressing.last_transition_time == NOW
        unavailable = Outcome(Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE, "down", delay=5)
        moved = statuses.next_status(
            later,
            progress=progress,
            storage="photos",
            outcome=unavailable,
            generation=1,
            now=NOW + datetime.timedelta(minutes=2),
        )
        progressing = moved.condition(ConditionType.PROGRESSING)
        assert progressing is not None and progressing.last_transition_time == NOW + datetime.timedelta(
            minutes=2
        )

    def test_storage_unavailable_measures_the_outage_from_the_condition(self) -> None:
        the_spec = spec(["a"], backoff={"initialSeconds": 1, "maxSeconds": 100})
        progress = Progress.start(the_spec)
        down = status_after(progress, Outcome(Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE, "down", delay=1))
        outcome = outcomes.storage_unavailable(
            the_spec,
            since=down.condition(ConditionType.PROGRESSING),
            error="connection refused",
            retry_after=None,
            now=NOW + datetime.timedelta(seconds=40),
            jitter=0,
        )
        assert (outcome.phase, outcome.reason, outcome.delay) == (
            Phase.BACKOFF,
            Reason.STORAGE_UNAVAILABLE,
            40,
        )
        assert progress.retries == 0

    def test_rejected_status_is_failed_with_the_reason(self) -> None:
        reject = Reject(Reason.UNKNOWN_STORAGE, "storage 'music' is not configured")
        status = statuses.rejected_status(
            FileCleanupStatus(),
            spec=spec(["a"], retryNonce="n1"),
            storage="music",
            reject=reject,
            generation=1,
            now=NOW,
        )
        failed = status.condition(ConditionType.FAILED)
        assert status.phase == Phase.FAILED
        assert failed is not None and (failed.status, failed.reason) == ("True", Reason.UNKNOWN_STORAGE)
        assert status.deleted == 0
        assert status.retry_nonce == "n1"  # acted on: the same nonce does not redrive it again

    def test_a_registered_secret_never_reaches_a_condition(self) -> None:
        secret = "echoed-S3cr3t-token-5f1e"  # as a storage could echo what it was sent
        redaction.register(secret)
        outcome = Outcome(Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE, f"storage said: {secret}", 5.0)
        status = status_after(Progress.start(spec(["a"])), outcome)
        messages = [condition.message for condition in status.conditions]
        assert secret not in "".join(messages)
        assert redaction.REDACTED in status.message
        carriers = [c.type for c in status.conditions if c.message]
        assert carriers == [ConditionType.PROGRESSING]  # one condition carries the message


class TestRedrive:
    def failed_status(self, the_spec: FileCleanupSpec) -> FileCleanupStatus:
        progress = Progress.start(the_spec)
        answer_round(progress, failing={"b", "d"})
        outcome = conclude(the_spec, progress, jitter=0)
        assert outcome.phase == Phase.FAILED
        return status_after(progress, outcome)

    def test_failed_object_is_left_alone_until_the_nonce_changes(self) -> None:
        the_spec = spec(["a", "b", "c", "d"], maxRetries=0)
        failed = self.failed_status(the_spec)
        assert isinstance(plan(the_spec, failed), Finished)

    def test_new_nonce_redrives_only_the_failed_keys_with_a_fresh_budget(self) -> None:
        the_spec = spec(["a", "b", "c", "d"], maxRetries=0, chunkSize=3)
        failed = self.failed_status(the_spec)
        redriven_spec = spec(["a", "b", "c", "d"], maxRetries=0, chunkSize=3, retryNonce="r1")
        action = plan(redriven_spec, failed)
        assert isinstance(action, Run)
        assert action.redrive
        progress = action.progress
        assert [progress.chunk_keys(chunk) for chunk in progress.chunks()] == [["b", "d"]]
        assert (progress.retries, progress.redrives, progress.deleted, progress.failed_count) == (0, 1, 2, 2)
        answer_round(progress)
        outcome = conclude(redriven_spec, progress, jitter=0)
        status = status_after(progress, outcome, failed)
        assert (status.phase, status.deleted, status.failed, status.redrives) == (Phase.SUCCEEDED, 4, 0, 1)
        assert status.retry_nonce == "r1"
        assert isinstance(plan(redriven_spec, status), Finished)

    def test_succeeded_object_ignores_a_nonce(self) -> None:
        the_spec = spec(["a"])
        progress = Progress.start(the_spec)
        answer_round(progress)
        done = status_after(progress, conclude(the_spec, progress, jitter=0))
        action = plan(spec(["a"], retryNonce="r1"), done)
        assert isinstance(action, Finished)

    def test_rejected_object_starts_over_once_its_storage_exists(self) -> None:
        reject = Reject(Reason.UNKNOWN_STORAGE, "storage 'photos' is not configured")
        rejected = statuses.rejected_status(
            FileCleanupStatus(), spec=spec(["a", "b"]), storage="photos", reject=reject, generation=1, now=NOW
        )
        action = plan(spec(["a", "b"], retryNonce="r1"), rejected)
        assert isinstance(action, Run)
        assert (action.progress.total, len(action.progress.pending), action.progress.redrives) == (2, 2, 1)
