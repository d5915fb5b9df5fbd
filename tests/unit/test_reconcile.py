from __future__ import annotations

import datetime
import posixpath
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup import reconcile
from filecleanup.config import StoragePolicy
from filecleanup.models import (
    MAX_LISTED_FAILED_KEYS,
    Backoff,
    ConditionType,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
)
from filecleanup.reconcile import Outcome, Progress, Reason, StorageRules
from filecleanup.storage.base import ChunkResult

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def spec(keys: list[str], **fields: object) -> FileCleanupSpec:
    return FileCleanupSpec.model_validate({"keys": keys, **fields})


def keys(count: int) -> list[str]:
    return [f"albums/1/{i}.jpg" for i in range(count)]


def answer(
    progress: Progress,
    chunk: list[int],
    failing: frozenset[str] | set[str] = frozenset(),
    whole: bool = False,
) -> None:
    requested = progress.chunk_keys(chunk)
    if whole:
        progress.record(chunk, ChunkResult.all_failed(requested, "HTTP 500"))
        return
    confirmed = [key for key in requested if key not in failing]
    progress.record(chunk, ChunkResult.from_reply(requested, confirmed, dict.fromkeys(failing, "boom")))


def run_round(
    progress: Progress, failing: frozenset[str] | set[str] = frozenset(), whole_failing: bool = False
) -> None:
    for chunk in progress.chunks():
        requested = set(progress.chunk_keys(chunk))
        answer(progress, chunk, failing, whole=whole_failing and bool(requested & failing))


OPEN = StoragePolicy(allowed_namespaces="*", key_prefix="")
STORAGES = {
    "photos": StorageRules(OPEN),
    "videos": StorageRules(OPEN),
    "bucket": StorageRules(OPEN, max_keys_per_call=1000),
    "tenants": StorageRules(
        StoragePolicy(allowed_namespaces=["team-a", "team-b"], key_prefix="t/{namespace}/")
    ),
}


def plan(
    the_spec: FileCleanupSpec, status: FileCleanupStatus, namespace: str = "ns", now: datetime.datetime = NOW
) -> reconcile.Action:
    return reconcile.plan(
        the_spec, status, namespace=namespace, storages=STORAGES, default_storage="photos", now=now
    )


def status_after(
    progress: Progress, outcome: Outcome, previous: FileCleanupStatus | None = None
) -> FileCleanupStatus:
    return reconcile.next_status(
        previous or FileCleanupStatus(),
        progress=progress,
        storage="photos",
        outcome=outcome,
        generation=1,
        now=NOW,
    )


class TestUniqueIndexes:
    def test_duplicates_are_deleted_once_at_their_first_position(self) -> None:
        assert reconcile.unique_indexes(["a", "b", "a", "c", "b"]) == [0, 1, 3]

    def test_total_counts_distinct_keys(self) -> None:
        assert Progress.start(spec(["a", "b", "a"])).total == 2


class TestBackoff:
    backoff = Backoff(initial_seconds=5, max_seconds=300)

    @pytest.mark.parametrize(
        ("retry_round", "expected"), [(1, 5), (2, 10), (3, 20), (6, 160), (7, 300), (50, 300)]
    )
    def test_doubles_per_round_up_to_the_cap(self, retry_round: int, expected: float) -> None:
        assert reconcile.backoff_delay(self.backoff, retry_round, jitter=0.0) == expected

    @pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
    def test_jitter_shortens_by_at_most_a_fifth_and_never_passes_the_cap(self, jitter: float) -> None:
        delay = reconcile.backoff_delay(self.backoff, 20, jitter)
        assert 240 <= delay <= 300

    def test_retry_after_wins_while_unavailable(self) -> None:
        assert reconcile.unavailable_delay(self.backoff, 1000, retry_after=7, jitter=0.9) == 7

    def test_absurd_retry_after_is_capped_at_an_hour(self) -> None:
        assert reconcile.unavailable_delay(self.backoff, 0, retry_after=10**9, jitter=0) == 3600

    @pytest.mark.parametrize(("unavailable_for", "expected"), [(0, 5), (3, 5), (40, 40), (10_000, 300)])
    def test_unavailable_wait_grows_with_the_outage(self, unavailable_for: float, expected: float) -> None:
        assert reconcile.unavailable_delay(self.backoff, unavailable_for, None, jitter=0) == expected


class TestProgress:
    def test_chunks_follow_chunk_size(self) -> None:
        progress = Progress.start(spec(keys(250), chunkSize=100))
        assert [len(chunk) for chunk in progress.chunks()] == [100, 100, 50]

    def test_a_failed_key_does_not_fail_its_chunk(self) -> None:
        progress = Progress.start(spec(keys(10), chunkSize=5))
        run_round(progress, failing={"albums/1/3.jpg"})
        assert (progress.deleted, list(progress.failed), progress.pending) == (9, [3], {})
        assert progress.failed[3] == "boom"

    def test_a_key_is_counted_once_even_if_answered_twice(self) -> None:
        progress = Progress.start(spec(keys(4), chunkSize=4))
        chunk = progress.chunks()[0]
        answer(progress, chunk)
        answer(progress, chunk)
        assert progress.deleted == 4

    def test_unrequested_confirmations_are_ignored(self) -> None:
        progress = Progress.start(spec(["a", "b"]))
        progress.record([0, 1], ChunkResult.from_reply(["a", "b"], ["a", "b", "zzz"], {}))
        assert progress.deleted == 2

    def test_retry_round_sends_only_failed_keys(self) -> None:
        progress = Progress.start(spec(keys(10), chunkSize=5))
        run_round(progress, failing={"albums/1/3.jpg", "albums/1/8.jpg"})
        progress.begin_retry_round()
        assert progress.retries == 1
        assert [progress.chunk_keys(chunk) for chunk in progress.chunks()] == [
            ["albums/1/3.jpg", "albums/1/8.jpg"]
        ]
        assert progress.failed_count == 2  # not yet retried, still failed

    def test_whole_call_failures_halve_the_next_rounds_chunks(self) -> None:
        progress = Progress.start(spec(keys(16), chunkSize=8))
        run_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        assert len(progress.failed) == 8  # the poison key failed its whole chunk
        progress.begin_retry_round()
        assert progress.chunk_size == 4
        run_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        progress.begin_retry_round()
        assert (progress.chunk_size, list(progress.pending)) == (2, [4, 5, 6, 7])
        run_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        progress.begin_retry_round()
        run_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        assert list(progress.failed) == [5]  # the poison key is pinned down; its neighbours are deleted
        assert progress.deleted == 15

    def test_chunk_size_never_drops_below_one(self) -> None:
        progress = Progress.start(spec(["a"], chunkSize=1))
        run_round(progress, failing={"a"}, whole_failing=True)
        progress.begin_retry_round()
        assert progress.chunk_size == 1

    def test_failed_keys_listed_are_capped_with_a_count_of_the_rest(self) -> None:
        progress = Progress.start(spec(keys(250)))
        run_round(progress, failing=set(keys(250)[:130]))
        listed, omitted = progress.listed_failures()
        assert len(listed) == MAX_LISTED_FAILED_KEYS
        assert omitted == 30
        assert listed[0].key == "albums/1/0.jpg"
        assert listed[0].attempts == 1

    def test_attempts_count_every_round_a_key_was_sent(self) -> None:
        progress = Progress.start(spec(["a", "b"]))
        run_round(progress, failing={"a"})
        progress.begin_retry_round()
        listed, _ = progress.listed_failures()
        assert [(item.key, item.attempts, item.error) for item in listed] == [("a", 1, "boom")]
        run_round(progress, failing={"a"})
        listed, _ = progress.listed_failures()
        assert [(item.key, item.attempts) for item in listed] == [("a", 2)]


class TestCheckpoint:
    def test_resume_from_status_continues_exactly_where_the_checkpoint_was(self) -> None:
        the_spec = spec(keys(300), chunkSize=100)
        progress = Progress.start(the_spec)
        first, second, _ = progress.chunks()
        answer(progress, first, failing={"albums/1/7.jpg"})
        answer(progress, second)
        checkpoint = status_after(progress, Outcome(Phase.IN_PROGRESS, Reason.DELETING, "deleting"))

        resumed = Progress.resume(the_spec, checkpoint)
        assert (resumed.deleted, resumed.total, list(resumed.failed)) == (199, 300, [7])
        assert list(resumed.pending) == list(range(200, 300))
        assert resumed.failed[7] == "boom"
        assert checkpoint.pending_indexes == "200-299"
        assert checkpoint.failed_indexes == "7"

    def test_resume_in_a_retry_round_keeps_earlier_errors(self) -> None:
        the_spec = spec(["a", "b", "c"])
        progress = Progress.start(the_spec)
        run_round(progress, failing={"a", "c"})
        progress.begin_retry_round()
        checkpoint = status_after(progress, Outcome(Phase.BACKOFF, Reason.RETRY_SCHEDULED, "retry", delay=5))
        resumed = Progress.resume(the_spec, checkpoint)
        assert (resumed.retries, list(resumed.pending), resumed.earlier_errors) == (
            1,
            [0, 2],
            {0: "boom", 2: "boom"},
        )
        assert checkpoint.failed == 2


class TestPlan:
    def plan(
        self, the_spec: FileCleanupSpec, status: FileCleanupStatus, namespace: str = "ns"
    ) -> reconcile.Action:
        return plan(the_spec, status, namespace=namespace)

    def test_new_object_starts_on_the_default_storage(self) -> None:
        action = self.plan(spec(["a"]), FileCleanupStatus())
        assert isinstance(action, reconcile.Run)
        assert (action.storage, action.starting, action.progress.total) == ("photos", True, 1)

    def test_named_storage_is_used(self) -> None:
        action = self.plan(spec(["a"], storage="videos"), FileCleanupStatus())
        assert isinstance(action, reconcile.Run)
        assert action.storage == "videos"

    def test_unknown_storage_is_rejected(self) -> None:
        action = self.plan(spec(["a"], storage="music"), FileCleanupStatus())
        assert isinstance(action, reconcile.Reject)
        assert action.reason == Reason.UNKNOWN_STORAGE
        assert "'music'" in action.message

    def test_chunk_size_beyond_the_storage_limit_is_rejected_naming_it(self) -> None:
        the_spec = FileCleanupSpec.model_construct(
            **{**spec(["a"], storage="bucket").__dict__, "chunk_size": 1001}
        )
        action = self.plan(the_spec, FileCleanupStatus())
        assert isinstance(action, reconcile.Reject)
        assert action.reason == Reason.INVALID_CHUNK_SIZE
        assert action.message == "chunkSize 1001 is more than storage 'bucket' takes in one call (1000)"
        assert isinstance(
            self.plan(spec(["a"], storage="bucket", chunkSize=1000), FileCleanupStatus()), reconcile.Run
        )

    @pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
    def test_finished_objects_are_left_alone(self, phase: Phase) -> None:
        assert isinstance(self.plan(spec(["a"]), FileCleanupStatus(phase=phase, total=1)), reconcile.Finished)

    def test_backoff_not_yet_over_waits_for_the_rest(self) -> None:
        status = FileCleanupStatus(
            phase=Phase.BACKOFF, total=1, next_retry_time=NOW + datetime.timedelta(seconds=30)
        )
        assert self.plan(spec(["a"]), status) == reconcile.Wait(30.0)

    def test_backoff_over_or_nearly_over_runs(self) -> None:
        status = FileCleanupStatus(
            phase=Phase.BACKOFF,
            total=1,
            pending_indexes="0",
            next_retry_time=NOW + datetime.timedelta(seconds=0.5),
        )
        action = self.plan(spec(["a"]), status)
        assert isinstance(action, reconcile.Run)
        assert not action.starting


class TestAfterRound:
    def test_no_failures_succeeds(self) -> None:
        progress = Progress.start(spec(["a", "b"]))
        run_round(progress)
        outcome = reconcile.after_round(spec(["a", "b"]), progress, jitter=0)
        assert (outcome.phase, outcome.reason, outcome.delay) == (Phase.SUCCEEDED, Reason.SUCCEEDED, None)

    def test_failures_with_budget_schedule_a_retry_round(self) -> None:
        the_spec = spec(["a", "b"], backoff={"initialSeconds": 2, "maxSeconds": 60})
        progress = Progress.start(the_spec)
        run_round(progress, failing={"b"})
        outcome = reconcile.after_round(the_spec, progress, jitter=0)
        assert (outcome.phase, outcome.reason, outcome.delay) == (Phase.BACKOFF, Reason.RETRY_SCHEDULED, 2)
        assert (progress.retries, list(progress.pending)) == (1, [1])

    def test_budget_exhausted_fails(self) -> None:
        the_spec = spec(["a", "b"], maxRetries=1)
        progress = Progress.start(the_spec)
        run_round(progress, failing={"b"})
        assert reconcile.after_round(the_spec, progress, jitter=0).phase == Phase.BACKOFF
        run_round(progress, failing={"b"})
        outcome = reconcile.after_round(the_spec, progress, jitter=0)
        assert (outcome.phase, outcome.reason) == (Phase.FAILED, Reason.RETRIES_EXHAUSTED)
        assert "1 of 2 keys not deleted after 1 retries" in outcome.message

    def test_zero_retries_fails_after_the_first_round(self) -> None:
        the_spec = spec(["a"], maxRetries=0)
        progress = Progress.start(the_spec)
        run_round(progress, failing={"a"})
        assert reconcile.after_round(the_spec, progress, jitter=0).phase == Phase.FAILED


class TestStatus:
    def test_succeeded_status_sets_complete_and_clears_progress(self) -> None:
        progress = Progress.start(spec(["a"]))
        run_round(progress)
        status = status_after(progress, reconcile.after_round(spec(["a"]), progress, jitter=0))
        assert (status.phase, status.total, status.deleted, status.failed) == (Phase.SUCCEEDED, 1, 1, 0)
        complete = status.condition(ConditionType.COMPLETE)
        progressing = status.condition(ConditionType.PROGRESSING)
        assert complete is not None and complete.status == "True" and complete.observed_generation == 1
        assert progressing is not None and progressing.status == "False"
        assert status.completion_time == NOW
        assert status.next_retry_time is None

    def test_backoff_status_names_the_next_retry_time(self) -> None:
        progress = Progress.start(spec(["a"]))
        run_round(progress, failing={"a"})
        status = status_after(progress, reconcile.after_round(spec(["a"]), progress, jitter=0))
        assert status.phase == Phase.BACKOFF
        assert status.next_retry_time == NOW + datetime.timedelta(seconds=5)
        assert status.completion_time is None

    def test_transition_time_moves_only_when_status_or_reason_changes(self) -> None:
        progress = Progress.start(spec(["a"]))
        deleting = Outcome(Phase.IN_PROGRESS, Reason.DELETING, "deleting")
        first = status_after(progress, deleting)
        later = reconcile.next_status(
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
        moved = reconcile.next_status(
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
        outcome = reconcile.storage_unavailable(
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
        reject = reconcile.Reject(Reason.UNKNOWN_STORAGE, "storage 'music' is not configured")
        status = reconcile.rejected_status(
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


class TestRedrive:
    def failed_status(self, the_spec: FileCleanupSpec) -> FileCleanupStatus:
        progress = Progress.start(the_spec)
        run_round(progress, failing={"b", "d"})
        outcome = reconcile.after_round(the_spec, progress, jitter=0)
        assert outcome.phase == Phase.FAILED
        return status_after(progress, outcome)

    def test_failed_object_is_left_alone_until_the_nonce_changes(self) -> None:
        the_spec = spec(["a", "b", "c", "d"], maxRetries=0)
        failed = self.failed_status(the_spec)
        assert isinstance(plan(the_spec, failed), reconcile.Finished)

    def test_new_nonce_redrives_only_the_failed_keys_with_a_fresh_budget(self) -> None:
        the_spec = spec(["a", "b", "c", "d"], maxRetries=0, chunkSize=3)
        failed = self.failed_status(the_spec)
        redriven_spec = spec(["a", "b", "c", "d"], maxRetries=0, chunkSize=3, retryNonce="r1")
        action = plan(redriven_spec, failed)
        assert isinstance(action, reconcile.Run)
        assert action.redrive
        progress = action.progress
        assert [progress.chunk_keys(chunk) for chunk in progress.chunks()] == [["b", "d"]]
        assert (progress.retries, progress.redrives, progress.deleted, progress.failed_count) == (0, 1, 2, 2)
        run_round(progress)
        outcome = reconcile.after_round(redriven_spec, progress, jitter=0)
        status = status_after(progress, outcome, failed)
        assert (status.phase, status.deleted, status.failed, status.redrives) == (Phase.SUCCEEDED, 4, 0, 1)
        assert status.retry_nonce == "r1"
        assert isinstance(plan(redriven_spec, status), reconcile.Finished)

    def test_succeeded_object_ignores_a_nonce(self) -> None:
        the_spec = spec(["a"])
        progress = Progress.start(the_spec)
        run_round(progress)
        done = status_after(progress, reconcile.after_round(the_spec, progress, jitter=0))
        action = plan(spec(["a"], retryNonce="r1"), done)
        assert isinstance(action, reconcile.Finished)

    def test_rejected_object_starts_over_once_its_storage_exists(self) -> None:
        reject = reconcile.Reject(Reason.UNKNOWN_STORAGE, "storage 'photos' is not configured")
        rejected = reconcile.rejected_status(
            FileCleanupStatus(), spec=spec(["a", "b"]), storage="photos", reject=reject, generation=1, now=NOW
        )
        action = plan(spec(["a", "b"], retryNonce="r1"), rejected)
        assert isinstance(action, reconcile.Run)
        assert (action.progress.total, len(action.progress.pending), action.progress.redrives) == (2, 2, 1)


class TestPolicy:
    def test_an_allowed_namespace_with_keys_under_its_prefix_runs(self) -> None:
        action = plan(
            spec(["t/team-a/1.jpg", "t/team-a/x/2.jpg"], storage="tenants"), FileCleanupStatus(), "team-a"
        )
        assert isinstance(action, reconcile.Run)

    def test_a_namespace_not_allowed_is_forbidden(self) -> None:
        action = plan(spec(["t/team-c/1.jpg"], storage="tenants"), FileCleanupStatus(), "team-c")
        assert isinstance(action, reconcile.Reject)
        assert (action.reason, action.message) == (
            Reason.FORBIDDEN,
            "namespace 'team-c' may not use storage 'tenants'",
        )

    def test_one_key_outside_the_prefix_forbids_the_whole_object(self) -> None:
        keys = [f"t/team-a/{i}.jpg" for i in range(500)] + ["t/team-b/theirs.jpg"]
        action = plan(spec(keys, storage="tenants"), FileCleanupStatus(), "team-a")
        assert isinstance(action, reconcile.Reject)
        assert action.reason == Reason.FORBIDDEN
        assert "1 keys are outside 't/team-a/'" in action.message
        assert "'t/team-b/theirs.jpg'" in action.message

    def test_the_policy_is_checked_again_on_a_redrive(self) -> None:
        failed = FileCleanupStatus(phase=Phase.FAILED, total=1, failed_indexes="0", retry_nonce=None)
        action = plan(spec(["t/team-b/x.jpg"], storage="tenants", retryNonce="r"), failed, "team-a")
        assert isinstance(action, reconcile.Reject)
        assert action.reason == Reason.FORBIDDEN


class TestDeadline:
    def test_a_new_object_runs_with_its_deadline(self) -> None:
        action = plan(spec(["a"], activeDeadlineSeconds=60), FileCleanupStatus())
        assert isinstance(action, reconcile.Run)
        assert action.deadline == NOW + datetime.timedelta(seconds=60)

    def test_past_the_deadline_it_fails(self) -> None:
        started = FileCleanupStatus(phase=Phase.IN_PROGRESS, total=1, pending_indexes="0", start_time=NOW)
        later = NOW + datetime.timedelta(seconds=61)
        action = plan(spec(["a"], activeDeadlineSeconds=60), started, now=later)
        assert isinstance(action, reconcile.Reject)
        assert action.reason == Reason.DEADLINE_EXCEEDED

    def test_a_backoff_wait_ends_at_the_deadline(self) -> None:
        waiting = FileCleanupStatus(
            phase=Phase.BACKOFF,
            total=1,
            pending_indexes="0",
            start_time=NOW,
            next_retry_time=NOW + datetime.timedelta(seconds=300),
        )
        assert plan(spec(["a"], activeDeadlineSeconds=60), waiting) == reconcile.Wait(60.0)

    def test_a_redrive_starts_the_clock_again(self) -> None:
        failed = FileCleanupStatus(phase=Phase.FAILED, total=1, failed_indexes="0", start_time=NOW)
        later = NOW + datetime.timedelta(hours=1)
        action = plan(spec(["a"], activeDeadlineSeconds=60, retryNonce="r"), failed, now=later)
        assert isinstance(action, reconcile.Run)
        assert action.deadline == later + datetime.timedelta(seconds=60)
        fresh = reconcile.fresh_drive(
            failed.model_copy(
                update={
                    "conditions": status_after(
                        Progress.start(spec(["a"])), Outcome(Phase.FAILED, Reason.RETRIES_EXHAUSTED, "x")
                    ).conditions
                }
            )
        )
        assert fresh.start_time is None
        assert [c.type for c in fresh.conditions] == [ConditionType.PROGRESSING]

    def test_deadline_outcome_counts_what_is_left(self) -> None:
        progress = Progress.start(spec(["a", "b", "c"], chunkSize=1))
        first = progress.chunks()[0]
        progress.record(first, ChunkResult.from_reply(["a"], ["a"], {}))
        outcome = reconcile.deadline_exceeded(spec(["a", "b", "c"], activeDeadlineSeconds=5), progress)
        assert (outcome.phase, outcome.reason) == (Phase.FAILED, Reason.DEADLINE_EXCEEDED)
        assert "deleted 1 of 3, 2 not deleted" in outcome.message


class TestTrust:
    """What a run takes from the object before it acts: a storage pinned at the start, a status checked
    against the keys, keys checked whatever CRD is installed, and a policy of whole segments."""

    def test_a_storage_changed_after_the_start_is_refused(self) -> None:
        started = FileCleanupStatus(phase=Phase.BACKOFF, storage="photos", total=1, pending_indexes="0")
        action = plan(spec(["a"], storage="videos"), started)
        assert isinstance(action, reconcile.Reject)
        assert action.reason == Reason.STORAGE_CHANGED
        assert "from 'photos' to 'videos'" in action.message

    def test_the_storage_stays_pinned_when_the_default_changes(self) -> None:
        started = FileCleanupStatus(phase=Phase.BACKOFF, storage="videos", total=1, pending_indexes="0")
        action = plan(spec(["a"]), started)  # the default is now photos
        assert isinstance(action, reconcile.Run)
        assert action.storage == "videos"

    @pytest.mark.parametrize(
        "fields",
        [
            {"pending_indexes": "0-5000000"},
            {"pending_indexes": "3"},
            {"pending_indexes": "0-1", "failed_indexes": "1"},
            {"deleted": 2},
            {"total": 7},
            {"chunk_size": 5000},
        ],
    )
    def test_a_status_that_does_not_fit_the_keys_starts_over(self, fields: dict[str, object]) -> None:
        checkpoint = {"phase": Phase.IN_PROGRESS, "storage": "photos", "total": 3, "pending_indexes": "0-2"}
        action = plan(spec(["a", "b", "c"]), FileCleanupStatus(**{**checkpoint, **fields}))
        assert isinstance(action, reconcile.Run)
        assert action.invalid_status is not None
        assert (
            action.starting and sorted(action.progress.pending) == [0, 1, 2] and action.progress.deleted == 0
        )

    def test_a_status_that_fits_is_resumed(self) -> None:
        checkpoint = FileCleanupStatus(
            phase=Phase.IN_PROGRESS,
            storage="photos",
            total=3,
            deleted=1,
            pending_indexes="1",
            failed_indexes="2",
        )
        action = plan(spec(["a", "b", "c"]), checkpoint)
        assert isinstance(action, reconcile.Run)
        assert action.invalid_status is None and list(action.progress.pending) == [1]

    @pytest.mark.parametrize(
        ("key", "message"),
        [
            ("a/../b", "a key must not contain a '..' path segment"),
            ("a/./b", "a key must not have a '.' path segment"),
            ("a//b", "a key must not have an empty path segment"),
            ("a/", "a key must not have an empty path segment"),
            ("/a", "a key must not start with '/'"),
            ("a\x7fb", "a key must not contain control characters"),
            ("a" * 1025, "at most 1024 characters"),
        ],
    )
    def test_keys_are_checked_by_the_model_whatever_crd_is_installed(self, key: str, message: str) -> None:
        with pytest.raises(ValueError, match=re.escape(message)):
            spec(["ok", key])


NAMESPACES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
SEGMENT = st.text(alphabet=st.sampled_from("ab-.x/\u2028 "), min_size=1, max_size=6)


@given(namespace=NAMESPACES, other=NAMESPACES, tail=st.lists(SEGMENT, min_size=1, max_size=4))
def test_no_key_of_namespace_a_reaches_a_path_of_namespace_b(
    namespace: str, other: str, tail: list[str]
) -> None:
    """For any key the policy lets namespace A delete, no backend's normalisation (a filesystem's path
    walk, a server's normpath) leads under namespace B's prefix."""
    policy = StoragePolicy(allowed_namespaces="*", key_prefix="tenants/{namespace}/")
    key = policy.prefix_for(namespace) + "/".join(tail)
    try:
        FileCleanupSpec.model_validate({"keys": [key]})
    except ValueError:
        return  # refused before any call
    if not key.startswith(policy.prefix_for(namespace)):
        return  # refused by the policy
    for normalised in (
        posixpath.normpath(key),
        "/".join(part for part in key.split("/") if part not in {"", "."}),
    ):
        assert normalised.startswith(policy.prefix_for(namespace))
        if other != namespace:
            assert not normalised.startswith(policy.prefix_for(other))
