"""Carries out ``reconcile``'s decisions for one object: storage calls, status checkpoints, events.

Returns how long to wait before the next run; the Kopf handler turns that into a requeue, so no
worker is ever held by a back-off.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from filecleanup import reconcile
from filecleanup.config import OperatorConfig
from filecleanup.models import ConditionType, FileCleanupSpec, FileCleanupStatus, Phase
from filecleanup.reconcile import Outcome, Progress, Reason
from filecleanup.storage import Storage, StorageUnavailable

EVENT_KEYS_SHOWN = 5


class StatusSink(Protocol):
    async def write(self, status: FileCleanupStatus) -> None: ...

    async def delete_object(self) -> None: ...


EventPoster = Callable[[str, str, str], None]  # (type, reason, message)


@dataclass(frozen=True)
class ObjectContext:
    """One FileCleanup as a run sees it, with its ways to report back."""

    spec: FileCleanupSpec
    status: FileCleanupStatus
    generation: int | None
    sink: StatusSink
    post_event: EventPoster
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]


class _StatusRecorder:
    """Computes the status from the round's progress and writes it; remembers the last one written."""

    def __init__(self, context: ObjectContext, progress: Progress, storage_name: str) -> None:
        self.latest = context.status
        self._context = context
        self._progress = progress
        self._storage_name = storage_name

    async def write(self, outcome: Outcome) -> None:
        status = reconcile.next_status(
            self.latest,
            progress=self._progress,
            storage=self._storage_name,
            outcome=outcome,
            generation=self._context.generation,
            now=utcnow(),
        )
        await self._context.sink.write(status)
        self.latest = status


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Engine:
    def __init__(
        self,
        config: OperatorConfig,
        storages: dict[str, Storage],
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._storages = storages
        self._jitter = jitter

    async def run(self, context: ObjectContext) -> float | None:
        """One run for one object. Returns seconds until it should run again, or None when done."""
        now = utcnow()
        limits = {name: storage.max_keys_per_call for name, storage in self._storages.items()}
        action = reconcile.plan(context.spec, context.status, limits, self._config.default_storage, now)
        match action:
            case reconcile.Finished():
                return await self._expire(context, now)
            case reconcile.Wait(seconds):
                return seconds
            case reconcile.Reject(reason, message):
                storage = context.spec.storage or self._config.default_storage
                await context.sink.write(
                    reconcile.rejected_status(
                        context.status,
                        spec=context.spec,
                        storage=storage,
                        reject=action,
                        generation=context.generation,
                        now=now,
                    )
                )
                context.post_event("Warning", reason, message)
                context.logger.error("Rejected: %s", message)
                return None
            case reconcile.Run(storage, progress, starting, redrive):
                if redrive:
                    message = f"redriving {len(progress.pending)} failed keys with a fresh retry budget"
                    context.post_event("Normal", Reason.REDRIVEN, message)
                    context.logger.info("Redriven: %s", message)
                return await self._run_round(context, storage, progress, starting=starting)

    async def _run_round(
        self, context: ObjectContext, storage_name: str, progress: Progress, *, starting: bool
    ) -> float | None:
        recorder = _StatusRecorder(context, progress, storage_name)
        deleting = Outcome(
            Phase.IN_PROGRESS,
            Reason.DELETING,
            f"deleting {len(progress.pending)} keys in chunks of {progress.chunk_size}",
        )
        previous = context.status.condition(ConditionType.PROGRESSING)
        probing_outage = previous is not None and previous.reason == Reason.STORAGE_UNAVAILABLE
        # While the storage is down, each try costs one status write, not two; the first checkpoint
        # after it answers says InProgress.
        if starting or (context.status.phase != Phase.IN_PROGRESS and not probing_outage):
            await recorder.write(deleting)

        async def checkpoint() -> None:
            await recorder.write(deleting)

        unavailable = await run_round(
            progress,
            self._storages[storage_name],
            workers=self._config.chunks_in_flight_per_object,
            checkpoint_interval=self._config.status_interval_seconds,
            checkpoint=checkpoint,
        )
        if unavailable is not None:
            progressing = recorder.latest.condition(ConditionType.PROGRESSING)
            outcome = reconcile.storage_unavailable(
                context.spec,
                since=progressing,
                error=str(unavailable),
                retry_after=unavailable.retry_after,
                now=utcnow(),
                jitter=self._jitter(),
            )
            await recorder.write(outcome)
            if progressing is None or progressing.reason != Reason.STORAGE_UNAVAILABLE:
                context.post_event("Warning", Reason.STORAGE_UNAVAILABLE, outcome.message)
            context.logger.warning("Storage unavailable: %s", outcome.message)
            return outcome.delay

        outcome = reconcile.after_round(context.spec, progress, self._jitter())
        await recorder.write(outcome)
        if outcome.phase == Phase.SUCCEEDED:
            context.post_event("Normal", "Completed", outcome.message)
            context.logger.info("Completed: %s", outcome.message)
            return self._ttl(context.spec)
        if outcome.phase == Phase.FAILED:
            listed, _ = progress.listed_failures()
            sample = ", ".join(item.key for item in listed[:EVENT_KEYS_SHOWN])
            context.post_event("Warning", Reason.RETRIES_EXHAUSTED, f"{outcome.message}; e.g. {sample}")
            context.logger.error("Retries exhausted: %s", outcome.message)
            return None
        context.post_event("Normal", Reason.RETRY_SCHEDULED, outcome.message)
        context.logger.info("Retry scheduled: %s", outcome.message)
        return outcome.delay

    def _ttl(self, spec: FileCleanupSpec) -> float | None:
        return None if spec.ttl_seconds_after_finished is None else float(spec.ttl_seconds_after_finished)

    async def _expire(self, context: ObjectContext, now: datetime.datetime) -> float | None:
        """Delete a Succeeded object once its TTL has passed; Failed objects stay as the record."""
        ttl = self._ttl(context.spec)
        finished = context.status.completion_time
        if ttl is None or context.status.phase != Phase.SUCCEEDED or finished is None:
            return None
        remaining = (finished + datetime.timedelta(seconds=ttl) - now).total_seconds()
        if remaining > 0:
            return remaining
        await context.sink.delete_object()
        context.logger.info("Deleted %.0f s after it succeeded (ttlSecondsAfterFinished)", ttl)
        return None


async def run_round(
    progress: Progress,
    storage: Storage,
    *,
    workers: int,
    checkpoint_interval: float,
    checkpoint: Callable[[], Awaitable[None]],
) -> StorageUnavailable | None:
    """Send the pending keys, up to ``workers`` chunks in flight, checkpointing at most once per
    ``checkpoint_interval``. Stops taking new chunks when the storage is unavailable."""
    chunks = iter(progress.chunks())
    unavailable: StorageUnavailable | None = None
    last_checkpoint = time.monotonic()

    async def worker() -> None:
        nonlocal unavailable, last_checkpoint
        for chunk in chunks:  # shared: each chunk is taken by one worker
            if unavailable is not None:
                return
            try:
                result = await storage.delete(progress.chunk_keys(chunk))
            except StorageUnavailable as error:
                unavailable = unavailable or error
                return
            progress.record(chunk, result)
            if time.monotonic() - last_checkpoint >= checkpoint_interval:
                last_checkpoint = time.monotonic()
                await checkpoint()

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())
    return unavailable
