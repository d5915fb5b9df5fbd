"""Layer run. A round: the chunks of an object's keys (or of a manifest) sent with a bounded number of calls
in flight, checkpointed, and stopped cleanly when the storage is gone, a deadline passes or the operator
shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol, TypeVar

from filecleanup.api.gate import KeyGate
from filecleanup.api.models import FileCleanupSpec, Reason
from filecleanup.storage import ChunkResult, Storage, StorageUnavailable
from filecleanup.storage.base import NotSent

ChunkT = TypeVar("ChunkT")
# On SIGTERM: how long the calls in flight may take to finish, and the last checkpoint to be written.
# The chart sets the first from the pod's termination grace period.
DEFAULT_SHUTDOWN_SECONDS = 20.0
FINAL_CHECKPOINT_SECONDS = 5.0


KEYS_PER_CHECKPOINT_INTERVAL = 1000
# While status writes wait for the API server, a round sends on until about this many keys have been
# answered since the last checkpoint that landed, then holds its next chunk until one lands: a crash
# in an outage re-sends at most about this many keys, and a short outage costs nothing.
UNRECORDED_KEYS_BOUND = 1000


def checkpoint_interval(seconds: float, total_keys: int) -> float:
    """Seconds between checkpoints: ``seconds`` per 1,000 keys of the object, at least ``seconds``.

    Every status write makes the API server re-encode and store the whole object, keys included, and
    send it to every watcher: a 10,000-key object is about 1 MB. Scaling the interval with the size
    bounds that traffic per object, while a crash still re-sends at most one interval of work.
    """
    return seconds * max(1.0, total_keys / KEYS_PER_CHECKPOINT_INTERVAL)


class StopRule:
    """Why a round stops early, decided in this one place for every source of keys: spec.suspend (as
    seen in a status write's reply), the operator's pause of the storage, too many keys failed for
    good, the deadline, or the source itself (a key refused, a report not saved). ``send_chunks`` asks
    it before each chunk, and the storage's queue before each call (``NotSent``); what a round that
    stopped comes to is then decided from what it saw (``suspension``, outcomes.stopped_early).
    Shutdown is the round's cancellation, which ``send_chunks`` handles itself."""

    def __init__(
        self,
        *,
        storage: str,
        paused: Callable[[], frozenset[str]],
        too_many_failed: Callable[[], bool],
        deadline: datetime.datetime | None,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._storage = storage
        self._paused = paused
        self._too_many_failed = too_many_failed
        self._deadline = deadline
        self._clock = clock
        self.suspend_asked = False
        self.pause_seen = False  # as seen when the round stopped: the pause file may change again
        self.halted = False

    def saw(self, spec: FileCleanupSpec | None) -> None:
        """The spec a status write returned: a suspension asked for during the round is seen here, at
        no extra request (Kopf delivers no spec change while a round runs)."""
        self.suspend_asked = self.suspend_asked or bool(spec and spec.suspend)

    def halt(self) -> None:
        """The source cannot go on (a key refused, a report the storage did not take)."""
        self.halted = True

    def deadline_passed(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def stop(self) -> bool:
        """Whether no new call may start."""
        self.pause_seen = self.pause_seen or self._storage in self._paused()
        return self.halted or self.stopped()

    @property
    def suspension(self) -> Reason | None:
        """What suspended the round, if anything did: spec.suspend first, then the pause."""
        if self.suspend_asked:
            return Reason.SUSPENDED
        return Reason.OPERATOR_PAUSED if self.pause_seen else None

    def stopped(self) -> bool:
        """Whether the round ended early for a reason this rule decides (the source's own halts
        aside): the caller then asks outcomes.stopped_early what follows."""
        return self.suspend_asked or self.pause_seen or self._too_many_failed() or self.deadline_passed()


class RoundWork(Protocol[ChunkT]):
    """What a round sends: its chunks, each chunk's keys, and where each call's outcome is recorded."""

    def chunks(self) -> AsyncGenerator[ChunkT, None]: ...

    def keys(self, chunk: ChunkT) -> list[str]: ...

    def record(self, chunk: ChunkT, result: ChunkResult) -> None: ...


class Checkpoints:
    """Checkpoints written in the background: the worker whose call made one due goes on with its next
    call at once. One write at a time, so that they land in order."""

    def __init__(self, write: Callable[[], Awaitable[None]], interval: float) -> None:
        self._write = write
        self._interval = interval
        self._last = time.monotonic()
        self._writing: asyncio.Future[None] | None = None
        self.unrecorded = 0  # keys answered since the last checkpoint landed (about: see _landed)

    def answered(self, keys: int) -> None:
        self.unrecorded += keys

    def if_due(self) -> None:
        if self._writing is not None and self._writing.done():
            self._writing.result()  # a failed write (the object deleted, say) ends the round
            self._writing = None
        if self._writing is None and time.monotonic() - self._last >= self._interval:
            self._last = time.monotonic()
            self._writing = asyncio.ensure_future(self._landed())

    async def _landed(self) -> None:
        # Answers recorded while the write was retried may be in it or not: the count is a bound's
        # measure, not a record.
        await self._write()
        self.unrecorded = 0

    async def settled(self) -> None:
        """Until the write in progress lands or fails (its failure is raised by the next if_due)."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)

    async def drain(self) -> None:
        if self._writing is not None:
            await self._writing

    async def last(self) -> None:
        """The final checkpoint of a cancelled round, after the one being written."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        await self._write()


async def send_chunks(
    work: RoundWork[ChunkT],
    storage: Storage,
    *,
    gate: KeyGate,
    workers: int,
    checkpoint_interval: float,
    checkpoint: Callable[[], Awaitable[None]],
    stop: StopRule,
    shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
    writes_failing: Callable[[], bool] = lambda: False,
) -> StorageUnavailable | None:
    """Send the round's chunks, up to ``workers`` calls in flight, checkpointing at most once per
    ``checkpoint_interval``. Every key passes ``gate`` as it is sent (``Storage.delete``).

    No new chunk starts once the storage is unavailable or ``stop`` says so (StopRule). When the
    round is cancelled (the operator is shutting down), no new chunk starts either, the calls in flight
    get up to ``shutdown_seconds`` to finish, their outcome is recorded and checkpointed, and then the
    cancellation goes on: no confirmed deletion goes unrecorded. A call still running after that is
    abandoned: its keys stay pending (deletes are idempotent), so the pod's grace period always holds.

    While status writes wait for the API server (``writes_failing``), the round sends on until
    UNRECORDED_KEYS_BOUND keys have been answered since the last checkpoint landed, then holds its next
    chunk until a checkpoint lands.
    """
    chunks = work.chunks()
    taking = asyncio.Lock()  # the workers share one iterator of chunks
    unavailable: StorageUnavailable | None = None
    # A checkpoint that failed (the object deleted, the API server refusing): the round ends, and the
    # error is raised as itself once the calls in flight are recorded, not wrapped in a TaskGroup's
    # ExceptionGroup, so that the caller can tell an object deleted meanwhile from its own bug.
    failed_checkpoint: Exception | None = None
    stopping = False
    checkpoints = Checkpoints(checkpoint, checkpoint_interval)

    def may_start() -> bool:
        return unavailable is None and failed_checkpoint is None and not stopping and not stop.stop()

    unrecorded_bound = UNRECORDED_KEYS_BOUND

    def holding() -> bool:
        return writes_failing() and checkpoints.unrecorded >= unrecorded_bound

    async def take() -> ChunkT | None:
        nonlocal unavailable
        async with taking:
            while holding():
                await checkpoints.settled()
            if not may_start():
                return None
            try:
                return await anext(chunks, None)
            except StorageUnavailable as error:  # reading a manifest's next part
                unavailable = unavailable or error
                return None

    async def worker() -> None:
        nonlocal unavailable, stopping, failed_checkpoint
        while (chunk := await take()) is not None:
            # A task of its own, shielded: cancelling the round must not abort a call the storage may
            # already have acted on.
            call = asyncio.ensure_future(storage.delete(work.keys(chunk), gate=gate, may_start=may_start))
            try:
                result = await asyncio.shield(call)
            except NotSent:
                return  # told to stop while it waited for its turn: its keys stay pending
            except asyncio.CancelledError:
                stopping = True
                # Kopf cancels again after a while: the wait goes on, within its own bound. A call still
                # waiting for its turn is not sent at all (NotSent): its keys stay pending.
                with contextlib.suppress(StorageUnavailable, NotSent, TimeoutError, asyncio.CancelledError):
                    work.record(chunk, await asyncio.wait_for(asyncio.shield(call), shutdown_seconds))
                raise
            except StorageUnavailable as error:
                unavailable = unavailable or error
                return
            work.record(chunk, result)
            checkpoints.answered(len(result.deleted) + len(result.failed))
            try:
                checkpoints.if_due()
            except Exception as error:  # noqa: BLE001  (raised below, as itself)
                failed_checkpoint = failed_checkpoint or error
                return

    try:
        async with contextlib.aclosing(chunks), asyncio.TaskGroup() as group:  # aclosing: reads ahead end
            for _ in range(workers):
                group.create_task(worker())
    except asyncio.CancelledError:
        # The workers have recorded their last calls by now.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.ensure_future(checkpoints.last())), FINAL_CHECKPOINT_SECONDS
            )
        raise
    if failed_checkpoint is not None:
        raise failed_checkpoint
    await checkpoints.drain()  # the caller's next write must come after it
    return unavailable
