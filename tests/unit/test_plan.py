"""The plan: what a run does from spec, status and the clock; the storage policy; the deadline;
status that cannot be trusted."""

from __future__ import annotations

import datetime
import posixpath
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.config import StoragePolicy
from filecleanup.api.models import (
    ConditionType,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
    Reason,
)
from filecleanup.decide import outcomes
from filecleanup.decide import plan as planning
from filecleanup.decide import status as statuses
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.plan import Finished, Reject, Run, Wait
from filecleanup.decide.progress import Progress
from filecleanup.storage.base import ChunkResult
from tests.unit.decisions import NOW, plan, spec, status_after


class TestPlan:
    def plan(
        self, the_spec: FileCleanupSpec, status: FileCleanupStatus, namespace: str = "ns"
    ) -> planning.Action:
        return plan(the_spec, status, namespace=namespace)

    def test_new_object_starts_on_the_default_storage(self) -> None:
        action = self.plan(spec(["a"]), FileCleanupStatus())
        assert isinstance(action, Run)
        assert (action.storage, action.starting, action.progress.total) == ("photos", True, 1)

    def test_named_storage_is_used(self) -> None:
        action = self.plan(spec(["a"], storage="videos"), FileCleanupStatus())
        assert isinstance(action, Run)
        assert action.storage == "videos"

    def test_unknown_storage_is_rejected(self) -> None:
        action = self.plan(spec(["a"], storage="music"), FileCleanupStatus())
        assert isinstance(action, Reject)
        assert action.reason == Reason.UNKNOWN_STORAGE
        assert "'music'" in action.message

    def test_chunk_size_beyond_the_storage_limit_is_rejected_naming_it(self) -> None:
        the_spec = FileCleanupSpec.model_construct(
            **{**spec(["a"], storage="bucket").__dict__, "chunk_size": 1001}
        )
        action = self.plan(the_spec, FileCleanupStatus())
        assert isinstance(action, Reject)
        assert action.reason == Reason.INVALID_CHUNK_SIZE
        assert action.message == "chunkSize 1001 is more than storage 'bucket' takes in one call (1000)"
        assert isinstance(self.plan(spec(["a"], storage="bucket", chunkSize=1000), FileCleanupStatus()), Run)

    @pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
    def test_finished_objects_are_left_alone(self, phase: Phase) -> None:
        assert isinstance(self.plan(spec(["a"]), FileCleanupStatus(phase=phase, total=1)), Finished)

    def test_backoff_not_yet_over_waits_for_the_rest(self) -> None:
        status = FileCleanupStatus(
            phase=Phase.BACKOFF, total=1, next_retry_time=NOW + datetime.timedelta(seconds=30)
        )
        assert self.plan(spec(["a"]), status) == Wait(30.0)

    def test_backoff_over_or_nearly_over_runs(self) -> None:
        status = FileCleanupStatus(
            phase=Phase.BACKOFF,
            total=1,
            pending_indexes="0",
            next_retry_time=NOW + datetime.timedelta(seconds=0.5),
        )
        action = self.plan(spec(["a"]), status)
        assert isinstance(action, Run)
        assert not action.starting


class TestPolicy:
    def test_an_allowed_namespace_with_keys_under_its_prefix_runs(self) -> None:
        action = plan(
            spec(["t/team-a/1.jpg", "t/team-a/x/2.jpg"], storage="tenants"), FileCleanupStatus(), "team-a"
        )
        assert isinstance(action, Run)

    def test_a_namespace_not_allowed_is_forbidden(self) -> None:
        action = plan(spec(["t/team-c/1.jpg"], storage="tenants"), FileCleanupStatus(), "team-c")
        assert isinstance(action, Reject)
        assert (action.reason, action.message) == (
            Reason.FORBIDDEN,
            "namespace 'team-c' may not use storage 'tenants'",
        )

    def test_one_key_outside_the_prefix_forbids_the_whole_object(self) -> None:
        keys = [f"t/team-a/{i}.jpg" for i in range(500)] + ["t/team-b/theirs.jpg"]
        action = plan(spec(keys, storage="tenants"), FileCleanupStatus(), "team-a")
        assert isinstance(action, Reject)
        assert action.reason == Reason.FORBIDDEN
        assert "1 key is outside 't/team-a/'" in action.message
        assert "'t/team-b/theirs.jpg'" in action.message

    def test_the_policy_is_checked_again_on_a_redrive(self) -> None:
        failed = FileCleanupStatus(phase=Phase.FAILED, total=1, failed_indexes="0", retry_nonce=None)
        action = plan(spec(["t/team-b/x.jpg"], storage="tenants", retryNonce="r"), failed, "team-a")
        assert isinstance(action, Reject)
        assert action.reason == Reason.FORBIDDEN


class TestDeadline:
    def test_a_new_object_runs_with_its_deadline(self) -> None:
        action = plan(spec(["a"], activeDeadlineSeconds=60), FileCleanupStatus())
        assert isinstance(action, Run)
        assert action.deadline == NOW + datetime.timedelta(seconds=60)

    def test_past_the_deadline_it_fails(self) -> None:
        started = FileCleanupStatus(phase=Phase.IN_PROGRESS, total=1, pending_indexes="0", start_time=NOW)
        later = NOW + datetime.timedelta(seconds=61)
        action = plan(spec(["a"], activeDeadlineSeconds=60), started, now=later)
        assert isinstance(action, Reject)
        assert action.reason == Reason.DEADLINE_EXCEEDED

    def test_a_backoff_wait_ends_at_the_deadline(self) -> None:
        waiting = FileCleanupStatus(
            phase=Phase.BACKOFF,
            total=1,
            pending_indexes="0",
            start_time=NOW,
            next_retry_time=NOW + datetime.timedelta(seconds=300),
        )
        assert plan(spec(["a"], activeDeadlineSeconds=60), waiting) == Wait(60.0)

    def test_a_redrive_starts_the_clock_again(self) -> None:
        failed = FileCleanupStatus(phase=Phase.FAILED, total=1, failed_indexes="0", start_time=NOW)
        later = NOW + datetime.timedelta(hours=1)
        action = plan(spec(["a"], activeDeadlineSeconds=60, retryNonce="r"), failed, now=later)
        assert isinstance(action, Run)
        assert action.deadline == later + datetime.timedelta(seconds=60)
        fresh = statuses.restarted_for_redrive(
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
        outcome = outcomes.deadline_exceeded(
            spec(["a", "b", "c"], activeDeadlineSeconds=5), outcomes.Tally.of(progress)
        )
        assert (outcome.phase, outcome.reason) == (Phase.FAILED, Reason.DEADLINE_EXCEEDED)
        assert "deleted 1 of 3, 2 not deleted" in outcome.message


class TestTrust:
    """What a run takes from the object before it acts: a storage pinned at the start, a status checked
    against the keys, keys checked whatever CRD is installed, and a policy of whole segments."""

    def test_a_storage_changed_after_the_start_is_refused(self) -> None:
        started = FileCleanupStatus(phase=Phase.BACKOFF, storage="photos", total=1, pending_indexes="0")
        action = plan(spec(["a"], storage="videos"), started)
        assert isinstance(action, Reject)
        assert action.reason == Reason.STORAGE_CHANGED
        assert "from 'photos' to 'videos'" in action.message

    def test_the_storage_stays_pinned_when_the_default_changes(self) -> None:
        started = FileCleanupStatus(phase=Phase.BACKOFF, storage="videos", total=1, pending_indexes="0")
        action = plan(spec(["a"]), started)  # the default is now photos
        assert isinstance(action, Run)
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
        assert isinstance(action, Run)
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
        assert isinstance(action, Run)
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
