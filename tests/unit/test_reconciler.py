"""The reconciler in-process, with fakes for the storage, the status sink and the events: what a run
writes and posts, a shutdown that stays within its bound, and errors of the operator's own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from filecleanup.api.config import OperatorConfig
from filecleanup.api.kube import ApiUnreachable, ObjectGone
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    DEFAULT_CONTROLLER,
    ConditionType,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
)
from filecleanup.decide.progress import Progress
from filecleanup.decide.retention import controller_label
from filecleanup.run.context import Next, ObjectContext, utcnow
from filecleanup.run.reconciler import Reconciler
from filecleanup.run.rounds import StopRule, send_chunks
from filecleanup.run.sources import KeysRound
from filecleanup.storage.base import ChunkResult, ConcurrencyLimited
from filecleanup.storage.limits import Limiter
from tools.devkit.gates import OPEN_GATE


@dataclass
class FakeStorage:
    """Confirms every key after ``seconds``; records the keys it was sent."""

    seconds: float = 0.0
    name: str = "photos"
    max_keys_per_call: int | None = None
    holds_manifests: bool = False
    sent: list[str] = field(default_factory=list)

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        self.sent += keys
        await asyncio.sleep(self.seconds)
        return ChunkResult.from_reply(keys, keys, {})

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass
class FakeSink:
    written: list[FileCleanupStatus] = field(default_factory=list)
    gone: bool = False
    write_seconds: float = 0.0
    writing: bool = False
    storage: FakeStorage | None = None
    calls_while_writing: int = 0
    spec: FileCleanupSpec | None = None  # what the API server returns with each write, as it does
    unreachable: bool = False  # the API server takes no write while this holds
    refused: int = 0  # writes refused for that

    async def write(self, status: FileCleanupStatus) -> FileCleanupSpec | None:
        if self.gone:
            raise ObjectGone("ns/name")
        if self.unreachable:
            self.refused += 1
            await asyncio.sleep(0)
            raise ApiUnreachable("ConnectionRefusedError: [Errno 111] Connect call failed")
        self.writing = True
        sent_before = len(self.storage.sent) if self.storage else 0
        await asyncio.sleep(self.write_seconds)
        if self.storage:
            self.calls_while_writing += len(self.storage.sent) - sent_before
        self.writing = False
        self.written.append(status)
        return self.spec


Events = list[tuple[str, str, str]]  # (type, reason, message), as posted

CONFIG = OperatorConfig.model_validate(
    {
        "defaultStorage": "photos",
        "storages": {
            "photos": {
                "type": "filesystem",
                "root": "/unused",
                "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
            }
        },
    }
)


def context(
    sink: FakeSink,
    events: list[tuple[str, str, str]],
    status: FileCleanupStatus | None = None,
    **spec: object,
) -> ObjectContext:
    return ObjectContext(
        spec=FileCleanupSpec.model_validate({"keys": [f"k/{i}" for i in range(10)], "chunkSize": 2, **spec}),
        status=status or FileCleanupStatus(),
        namespace="albums",
        name="album-1",
        generation=1,
        sink=sink,
        post_event=lambda kind, reason, message: events.append((kind, reason, message)),
        logger=logging.getLogger("test"),
    )


def never_stopped(told: Callable[[], bool] = lambda: False) -> StopRule:
    """A round's stop rule with no suspension, pause or deadline; ``told`` stands for a reason that
    comes during the round (as too many keys failed for good would)."""
    return StopRule(storage="photos", paused=frozenset, too_many_failed=told, deadline=None, clock=utcnow)


def limited(backend: FakeStorage, requests: int = 8) -> ConcurrencyLimited:
    """The backend held to its limits, as the operator holds every storage."""
    return ConcurrencyLimited(backend, Limiter(requests), Metrics())


def reconciler(storage: FakeStorage) -> Reconciler:
    return Reconciler(
        CONFIG, {"photos": limited(storage)}, Metrics(), jitter=lambda: 0.0, shutdown_seconds=0.5
    )


async def test_a_short_run_writes_its_status_once_and_posts_completed() -> None:
    sink, events, storage = FakeSink(), Events(), FakeStorage()
    after = await reconciler(storage).run(context(sink, events, ttlSecondsAfterFinished=60))
    assert after.requeue_after is None  # done: the sweeper deletes it once its TTL has passed
    expires = int(sink.written[-1].completion_time.timestamp()) + 60  # type: ignore[union-attr]
    assert after.labels == {
        "filecleanup.dev/phase": "Succeeded",
        "filecleanup.dev/bytes": "0",
        "filecleanup.dev/controller": controller_label(DEFAULT_CONTROLLER),
        "filecleanup.dev/expires-at": str(expires),
        "filecleanup.dev/generation": "1",
    }
    # Done before the first checkpoint was due: one write, the final one, with the round's start time.
    assert [status.phase for status in sink.written] == [Phase.SUCCEEDED]
    assert sink.written[-1].deleted == 10
    assert sink.written[-1].start_time < sink.written[-1].completion_time  # type: ignore[operator]
    assert events == [("Normal", "Completed", "deleted 10 of 10 keys")]
    assert sorted(storage.sent) == sorted(f"k/{i}" for i in range(10))


async def test_a_long_run_checkpoints_in_progress_without_holding_up_its_calls() -> None:
    storage = FakeStorage(seconds=0.02)
    sink, events = FakeSink(write_seconds=0.2, storage=storage), Events()
    # One call at a time, a checkpoint due after 50 ms that takes 200 ms to write.
    config = CONFIG.model_copy(update={"status_interval_seconds": 0.05, "chunks_in_flight_per_object": 1})
    run = Reconciler(
        config, {"photos": limited(storage)}, Metrics(), jitter=lambda: 0.0, shutdown_seconds=0.5
    )
    await run.run(context(sink, events, chunkSize=1))
    phases = [status.phase for status in sink.written]
    assert phases[0] == Phase.IN_PROGRESS and phases[-1] == Phase.SUCCEEDED
    assert 0 < sink.written[0].deleted < 10  # a checkpoint from the middle of the round
    assert sink.calls_while_writing > 0  # the one worker went on calling while it was written
    assert sink.written[-1].deleted == 10


async def test_an_object_deleted_mid_run_ends_the_run_quietly() -> None:
    sink, events = FakeSink(gone=True), Events()
    assert await reconciler(FakeStorage()).run(context(sink, events)) == Next()
    assert events == []


async def test_an_internal_error_is_shown_retried_within_the_budget_then_failed() -> None:
    sink, events, run = FakeSink(), Events(), reconciler(FakeStorage())
    after = await run.internal_error(context(sink, events, maxRetries=1), ValueError("a bug"))
    first = sink.written[-1]
    assert after.requeue_after == 5.0  # the object's own back-off
    assert (first.phase, first.internal_errors) == (Phase.BACKOFF, 1)
    assert first.condition("Progressing").reason == "InternalError"  # type: ignore[arg-type,union-attr]
    assert events[-1][:2] == ("Warning", "InternalError")
    assert "ValueError" in events[-1][2]

    last_run = await run.internal_error(context(sink, events, first, maxRetries=1), ValueError("again"))
    assert last_run.requeue_after is None
    last = sink.written[-1]
    assert (last.phase, last.internal_errors) == (Phase.FAILED, 2)
    assert last.condition("Failed").reason == "InternalError"  # type: ignore[arg-type,union-attr]


async def test_a_status_that_is_not_trusted_is_replaced_with_a_condition_that_says_so() -> None:
    sink, events, storage = FakeSink(), Events(), FakeStorage()
    edited = FileCleanupStatus(phase=Phase.BACKOFF, total=10, pending_indexes="0-5000000", chunk_size=2)
    await reconciler(storage).run(context(sink, events, edited))
    restart, *_, last = sink.written
    progressing = restart.condition(ConditionType.PROGRESSING)
    assert (restart.phase, restart.deleted, restart.pending_indexes) == (Phase.IN_PROGRESS, 0, "0-9")
    assert progressing is not None and progressing.reason == "InvalidStatus"
    assert "starting over from the keys" in progressing.message
    assert [reason for kind, reason, _ in events if kind == "Warning"] == ["InvalidStatus"]
    assert (last.phase, last.deleted) == (Phase.SUCCEEDED, 10)
    assert sorted(storage.sent) == sorted(f"k/{i}" for i in range(10))  # each key once


@dataclass
class PauseOnce:
    """The pause file as the operator reads it: armed by the first call, read as paused only once,
    then lifted (its next reading, 5 s later, said otherwise)."""

    armed: bool = False

    def __call__(self) -> frozenset[str]:
        paused, self.armed = self.armed, False
        return frozenset({"photos"}) if paused else frozenset()


@dataclass
class ArmingStorage(FakeStorage):
    pause: PauseOnce = field(default_factory=PauseOnce)

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        self.pause.armed = not self.sent
        return await super().delete(keys)


async def test_a_round_stopped_by_the_pause_is_suspended_even_if_the_pause_is_lifted_before_it_ends() -> None:
    sink, events, storage = FakeSink(), Events(), ArmingStorage()
    config = CONFIG.model_copy(update={"chunks_in_flight_per_object": 1})
    run = Reconciler(
        config, {"photos": limited(storage)}, Metrics(), jitter=lambda: 0.0, paused=storage.pause
    )
    after = await run.run(context(sink, events))
    last = sink.written[-1]
    assert (last.phase, last.deleted) == (Phase.SUSPENDED, 2)  # never Failed: there is no deadline
    assert last.condition(ConditionType.SUSPENDED).reason == "OperatorPaused"  # type: ignore[union-attr]
    assert after.requeue_after == 30.0  # it looks again for the end of the pause
    assert [reason for kind, reason, _ in events if kind == "Warning"] == []


def progress_of(count: int) -> Progress:
    return Progress.start(
        FileCleanupSpec.model_validate({"keys": [f"k/{i}" for i in range(count)], "chunkSize": 1})
    )


async def cancel_a_round(
    call_seconds: float, shutdown_seconds: float, storage_slots: int = 8
) -> tuple[Progress, list[int], float]:
    """Four one-key chunks, two workers, the round cancelled (a SIGTERM) 50 ms in: the progress, the
    deleted count at each checkpoint, and how long the cancellation took."""
    progress, checkpoints = progress_of(4), []

    async def checkpoint() -> None:
        checkpoints.append(progress.deleted)

    task = asyncio.create_task(
        send_chunks(
            KeysRound(progress),
            limited(FakeStorage(call_seconds), storage_slots),
            gate=OPEN_GATE,
            workers=2,
            checkpoint_interval=60,
            checkpoint=checkpoint,
            stop=never_stopped(),
            shutdown_seconds=shutdown_seconds,
        )
    )
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return progress, checkpoints, time.monotonic() - started


async def test_on_cancel_calls_in_flight_finish_and_are_recorded() -> None:
    progress, checkpoints, _ = await cancel_a_round(call_seconds=0.2, shutdown_seconds=5)
    assert progress.deleted == 2  # the two calls in flight, recorded; no new one started
    assert checkpoints == [2]


async def test_on_cancel_a_chunk_still_waiting_for_its_turn_is_not_sent_and_the_rest_is_recorded() -> None:
    progress, checkpoints, _ = await cancel_a_round(call_seconds=0.2, shutdown_seconds=5, storage_slots=1)
    assert (progress.deleted, len(progress.pending)) == (1, 3)  # the one call in flight, recorded
    assert checkpoints == [1]


async def test_on_cancel_calls_that_outlive_the_shutdown_bound_are_abandoned_and_stay_pending() -> None:
    progress, checkpoints, took = await cancel_a_round(call_seconds=30, shutdown_seconds=0.3)
    assert took < 1.0
    assert (progress.deleted, len(progress.pending)) == (0, 4)  # unknown outcomes: sent again later
    assert checkpoints == [0]


@pytest.mark.parametrize("storage_slots", [4, 2])
async def test_once_told_to_stop_no_new_call_goes_out_and_the_calls_in_flight_are_recorded(
    storage_slots: int,
) -> None:
    progress, backend, stop = progress_of(20), FakeStorage(0.1), asyncio.Event()

    async def checkpoint() -> None:
        """Nothing to write."""

    async def pause_soon() -> None:
        await asyncio.sleep(0.05)
        stop.set()  # as an operator-wide pause or a suspension would

    pausing = asyncio.create_task(pause_soon())
    unavailable = await send_chunks(
        KeysRound(progress),
        limited(backend, storage_slots),
        gate=OPEN_GATE,
        workers=4,
        checkpoint_interval=60,
        checkpoint=checkpoint,
        stop=never_stopped(told=stop.is_set),
    )
    await pausing
    assert unavailable is None
    # Only the calls already at the storage: with 2 slots, the chunks the other two workers had taken
    # were still waiting for their turn, and are not sent.
    assert backend.sent == [f"k/{i}" for i in range(storage_slots)]
    assert (progress.deleted, len(progress.pending)) == (storage_slots, 20 - storage_slots)
