"""What follows a round: Succeeded, a retry round, Failed."""

from __future__ import annotations

import dataclasses

from filecleanup.api.models import (
    Phase,
    Reason,
)
from filecleanup.decide import outcomes
from filecleanup.decide.progress import Progress
from tests.unit.decisions import NOW, answer_round, conclude, spec


class TestAfterRound:
    def test_no_failures_succeeds(self) -> None:
        progress = Progress.start(spec(["a", "b"]))
        answer_round(progress)
        outcome = conclude(spec(["a", "b"]), progress, jitter=0)
        assert (outcome.phase, outcome.reason, outcome.delay) == (Phase.SUCCEEDED, Reason.SUCCEEDED, None)

    def test_failures_with_budget_schedule_a_retry_round(self) -> None:
        the_spec = spec(["a", "b"], backoff={"initialSeconds": 2, "maxSeconds": 60})
        progress = Progress.start(the_spec)
        answer_round(progress, failing={"b"})
        outcome = conclude(the_spec, progress, jitter=0)
        assert (outcome.phase, outcome.reason, outcome.delay) == (Phase.BACKOFF, Reason.RETRY_SCHEDULED, 2)
        assert (progress.retries, list(progress.pending)) == (1, [1])

    def test_deciding_changes_nothing(self) -> None:
        the_spec = spec(["a", "b"])
        progress = Progress.start(the_spec)
        answer_round(progress, failing={"b"})
        before = dataclasses.replace(progress, pending=dict(progress.pending), failed=dict(progress.failed))
        assert (
            outcomes.after_round(the_spec, outcomes.Tally.of(progress), jitter=0, now=NOW).phase
            == Phase.BACKOFF
        )
        assert progress == before

    def test_budget_exhausted_fails(self) -> None:
        the_spec = spec(["a", "b"], maxRetries=1)
        progress = Progress.start(the_spec)
        answer_round(progress, failing={"b"})
        assert conclude(the_spec, progress, jitter=0).phase == Phase.BACKOFF
        answer_round(progress, failing={"b"})
        outcome = conclude(the_spec, progress, jitter=0)
        assert (outcome.phase, outcome.reason) == (Phase.FAILED, Reason.RETRIES_EXHAUSTED)
        assert "1 of 2 keys not deleted after 1 retry;" in outcome.message

    def test_zero_retries_fails_after_the_first_round(self) -> None:
        the_spec = spec(["a"], maxRetries=0)
        progress = Progress.start(the_spec)
        answer_round(progress, failing={"a"})
        assert conclude(the_spec, progress, jitter=0).phase == Phase.FAILED


class TestCountsReadAsEnglish:
    def test_one_failed_key_and_one_retry_are_singular(self) -> None:
        the_spec = spec(["a", "b"], maxRetries=1, backoff={"initialSeconds": 2, "maxSeconds": 60})
        progress = Progress.start(the_spec)
        answer_round(progress, failing={"b"})
        assert conclude(the_spec, progress, jitter=0).message == "retry 1 of 1 for 1 failed key in 2 s"
        answer_round(progress, failing={"b"})
        assert conclude(the_spec, progress, jitter=0).message.startswith(
            "1 of 2 keys not deleted after 1 retry; deleted 1"
        )

    def test_one_key_is_singular_and_none_plural(self) -> None:
        assert outcomes.deleting(1, 100).message == "deleting 1 key in chunks of 100"
        assert outcomes.dry_run_checking(0).message == "dry run: checking 0 keys; nothing is deleted"
        assert outcomes.prefix_empty("a/", 1).message == (
            "no key under a/ to delete; 1 key there no FileCleanup key can name was left"
        )
        single = spec(["a"])
        progress = Progress.start(single)
        answer_round(progress)
        assert conclude(single, progress, jitter=0).message == "deleted 1 of 1 key"
