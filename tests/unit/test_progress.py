"""Progress: a round's chunks, what each answer records, checkpoints and their trust."""

from __future__ import annotations

from filecleanup.api.models import (
    MAX_LISTED_FAILED_KEYS,
    Phase,
    Reason,
)
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.progress import Progress, unique_indexes
from filecleanup.storage.base import ChunkResult
from tests.unit.decisions import answer, answer_round, keys, spec, status_after


class TestUniqueIndexes:
    def test_duplicates_are_deleted_once_at_their_first_position(self) -> None:
        assert unique_indexes(["a", "b", "a", "c", "b"]) == [0, 1, 3]

    def test_total_counts_distinct_keys(self) -> None:
        assert Progress.start(spec(["a", "b", "a"])).total == 2


class TestProgress:
    def test_chunks_follow_chunk_size(self) -> None:
        progress = Progress.start(spec(keys(250), chunkSize=100))
        assert [len(chunk) for chunk in progress.chunks()] == [100, 100, 50]

    def test_a_failed_key_does_not_fail_its_chunk(self) -> None:
        progress = Progress.start(spec(keys(10), chunkSize=5))
        answer_round(progress, failing={"albums/1/3.jpg"})
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
        answer_round(progress, failing={"albums/1/3.jpg", "albums/1/8.jpg"})
        progress.begin_retry_round()
        assert progress.retries == 1
        assert [progress.chunk_keys(chunk) for chunk in progress.chunks()] == [
            ["albums/1/3.jpg", "albums/1/8.jpg"]
        ]
        assert progress.failed_count == 2  # not yet retried, still failed

    def test_whole_call_failures_halve_the_next_rounds_chunks(self) -> None:
        progress = Progress.start(spec(keys(16), chunkSize=8))
        answer_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        assert len(progress.failed) == 8  # the poison key failed its whole chunk
        progress.begin_retry_round()
        assert progress.chunk_size == 4
        answer_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        progress.begin_retry_round()
        assert (progress.chunk_size, list(progress.pending)) == (2, [4, 5, 6, 7])
        answer_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        progress.begin_retry_round()
        answer_round(progress, failing={"albums/1/5.jpg"}, whole_failing=True)
        assert list(progress.failed) == [5]  # the poison key is pinned down; its neighbours are deleted
        assert progress.deleted == 15

    def test_chunk_size_never_drops_below_one(self) -> None:
        progress = Progress.start(spec(["a"], chunkSize=1))
        answer_round(progress, failing={"a"}, whole_failing=True)
        progress.begin_retry_round()
        assert progress.chunk_size == 1

    def test_failed_keys_listed_are_capped_with_a_count_of_the_rest(self) -> None:
        progress = Progress.start(spec(keys(250)))
        answer_round(progress, failing=set(keys(250)[:130]))
        listed, omitted = progress.listed_failures()
        assert len(listed) == MAX_LISTED_FAILED_KEYS
        assert omitted == 30
        assert listed[0].key == "albums/1/0.jpg"
        assert listed[0].attempts == 1

    def test_attempts_count_every_round_a_key_was_sent(self) -> None:
        progress = Progress.start(spec(["a", "b"]))
        answer_round(progress, failing={"a"})
        progress.begin_retry_round()
        listed, _ = progress.listed_failures()
        assert [(item.key, item.attempts, item.error) for item in listed] == [("a", 1, "boom")]
        answer_round(progress, failing={"a"})
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
        answer_round(progress, failing={"a", "c"})
        progress.begin_retry_round()
        checkpoint = status_after(progress, Outcome(Phase.BACKOFF, Reason.RETRY_SCHEDULED, "retry", delay=5))
        resumed = Progress.resume(the_spec, checkpoint)
        assert (resumed.retries, list(resumed.pending), resumed.earlier_errors) == (
            1,
            [0, 2],
            {0: "boom", 2: "boom"},
        )
        assert checkpoint.failed == 2
