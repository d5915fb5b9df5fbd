"""Layer run. The deletion of one object, whatever its keys' source (sources.py): one loop of
rounds, checkpoints, the one stop rule, the outage wait, and one set of decisions (decide/outcomes.py)
for what follows, announced the same way for every source.

Returns how long to wait before the next run; the Kopf handler turns that into a requeue, so no
worker is ever held by a back-off."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from typing import Generic

from filecleanup.api.gate import KeyGate
from filecleanup.api.kube import ApiUnreachable
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    Condition,
    ConditionType,
    EventReason,
    FileCleanupStatus,
    Phase,
    Reason,
    ReceiptPlace,
)
from filecleanup.api.wording import plural
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.status import restarted_for_redrive, with_erasure, with_verification
from filecleanup.run.api_reach import ApiReachability
from filecleanup.run.context import ObjectContext, announce
from filecleanup.run.receipts import ReceiptWriter
from filecleanup.run.rounds import DEFAULT_SHUTDOWN_SECONDS, StopRule, send_chunks
from filecleanup.run.sources import KeySource, PartT, ProgressNotSaved
from filecleanup.storage import Storage, StorageUnavailable


class ObjectRun(Generic[PartT]):
    """One run of one object's deletion from ``source``."""

    def __init__(
        self,
        context: ObjectContext,
        source: KeySource[PartT],
        storage_name: str,
        storage: Storage,
        *,
        gate: KeyGate,
        metrics: Metrics,
        workers: int,
        checkpoint_seconds: float,
        deadline: datetime.datetime | None,
        api: ApiReachability,
        jitter: Callable[[], float] = random.random,
        shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
        paused: Callable[[], frozenset[str]] = frozenset,
        recoverable_seconds: int | None = None,
        receipts: ReceiptWriter | None = None,
        verify_after: list[int] | None = None,
    ) -> None:
        self._context = context
        self._recoverable_seconds = recoverable_seconds  # the storage's erasure horizon, if known
        self._receipts = receipts
        self._verify_after = verify_after  # the re-checks once it Succeeded (the storage's verify)
        self._receipt: ReceiptPlace | None = None  # where this run's receipt went
        self._api = api
        self.writes_failing = False  # a status write is waiting for the API server
        self._source = source
        self._storage_name = storage_name
        self._storage = storage
        self._gate = gate
        self._metrics = metrics
        self._workers = workers
        self._checkpoint_seconds = source.checkpoint_seconds(checkpoint_seconds)
        self._jitter = jitter
        self._shutdown_seconds = shutdown_seconds
        self.latest = context.status
        self._stop = StopRule(
            storage=storage_name,
            paused=paused,
            too_many_failed=lambda: source.tally().too_many_failed(context.spec.max_failed_keys),
            deadline=deadline,
            clock=context.clock,
        )
        # What a checkpoint in the round could not save: the round stops, and the run ends on it.
        self._not_saved: ProgressNotSaved | None = None

    async def run(self, *, starting: bool, redrive: bool) -> float | None:
        context, source = self._context, self._source
        problem = source.untrusted() or context.status_problem
        if problem is not None:
            await self._start_over(problem)
        if redrive:
            message = source.redrive()
            context.post_event("Normal", EventReason.REDRIVEN, message)
            context.logger.info("Redriven: %s", message)
            self.latest = restarted_for_redrive(self.latest)
        if self.latest.start_time is None:  # the round's, whenever it is first written
            self.latest = self.latest.model_copy(update={"start_time": context.clock()})
        if starting and not redrive and context.spec.start_after is not None:
            # The grace period's end is written before the first call: `filecleanup undo` deletes the
            # object only at the version that shows it waiting, so an object it cancels has sent nothing.
            await self.write(source.deleting())
        try:
            ended = await source.prepare(self.write, since=self._progressing(), resuming=starting or redrive)
            if ended is not None:
                return await self._finish(ended)
            if starting and not redrive:
                context.logger.info("Started: %s on %s", source.deleting().message, self._storage_name)
            return await self._rounds()
        except ProgressNotSaved as error:
            return await self._progress_not_saved(error)
        except StorageUnavailable as error:
            return await self._unavailable(error)

    async def write(self, outcome: Outcome) -> None:
        """The status for ``outcome``; the spec the write returned is what the stop rule sees.

        While the API server does not take it (``ApiUnreachable``), the write is tried again after a
        capped back-off, computed afresh each time so that it carries the newest progress: an outage
        of the API server is a wait, and no confirmed deletion is forgotten by it. Only the object's
        deletion, or a write refused for good, ends the run."""
        failed_since: datetime.datetime | None = None
        attempt = 0
        while True:
            status = self._status(outcome)
            try:
                stored = await self._context.sink.write(status)
            except ApiUnreachable as error:
                failed_since = failed_since or self._context.clock()
                self.writes_failing = True
                await self._api.wait_after(error, attempt, self._jitter())
                attempt += 1
                continue
            break
        self.writes_failing = False
        self._api.landed()
        self.latest = status
        self._stop.saw(stored)
        if failed_since is not None:
            waited = (self._context.clock() - failed_since).total_seconds()
            message = (
                f"status writes waited {waited:.0f} s for the Kubernetes API server "
                f"({plural(attempt, 'try', 'tries')}); "
                "the progress was kept and is written"
            )
            self._context.post_event("Warning", EventReason.STATUS_DELAYED, message)
            self._context.logger.warning("Status delayed: %s", message)

    def _status(self, outcome: Outcome) -> FileCleanupStatus:
        status = self._source.status(
            self.latest,
            outcome,
            storage=self._storage_name,
            generation=self._context.generation,
            now=self._context.clock(),
        )
        status = with_verification(with_erasure(status, self._recoverable_seconds), self._verify_after)
        if status.phase.finished and self._receipt is not None:
            status = status.model_copy(update={"receipt": self._receipt})
        return status

    async def _start_over(self, problem: str) -> None:
        """Status that no run could have written is not followed: the run starts over, said before
        any call (deletes are idempotent, and the counts are rebuilt)."""
        context = self._context
        restart = outcomes.status_not_trusted(problem, self._source.origin)
        self._source.start_over()
        self.latest = FileCleanupStatus()
        await self.write(restart)
        context.post_event("Warning", Reason.INVALID_STATUS, restart.message)
        context.logger.warning("Invalid status: %s", restart.message)

    async def _rounds(self) -> float | None:
        source, stop = self._source, self._stop
        deleting = source.deleting()
        for part in source.parts(stop.halt):

            async def checkpoint(part: PartT = part) -> None:
                if self._not_saved is not None:
                    return
                try:
                    await source.save(part)
                except ProgressNotSaved as error:
                    self._not_saved = error
                    stop.halt()
                    return
                await self.write(deleting)

            unavailable = await send_chunks(
                part,
                self._storage,
                gate=self._gate,
                workers=self._workers,
                checkpoint_interval=self._checkpoint_seconds,
                checkpoint=checkpoint,
                stop=stop,
                shutdown_seconds=self._shutdown_seconds,
                writes_failing=lambda: self.writes_failing,
            )
            if self._not_saved is not None:
                raise self._not_saved
            await source.save(part)
            if unavailable is not None:
                return await self._unavailable(unavailable)
            ended = source.part_ended(part)
            if ended is not None:
                return await self._finish(ended)
            if stop.stopped():
                stopped = outcomes.stopped_early(
                    self._context.spec, source.tally(), suspension=stop.suspension, storage=self._storage_name
                )
                if stopped is not None:  # where it stands: a suspended one is resumed from here
                    return await self._finish(stopped)
            if source.next_part(part):
                await self.write(deleting)
        outcome = source.round_ended() or outcomes.after_round(
            self._context.spec, source.tally(), self._jitter(), now=self._context.clock()
        )
        if outcome.phase == Phase.BACKOFF:
            source.next_round()  # the status then holds the next round, waiting
        return await self._finish(outcome)

    async def _progress_not_saved(self, error: ProgressNotSaved) -> float | None:
        """A failure report could not be saved: its keys stay pending (status is as of the last save).
        An outage is waited out; a place no report can ever be written ends the run."""
        if isinstance(error.cause, StorageUnavailable):
            return await self._unavailable(error.cause)
        return await self._finish(outcomes.report_not_saved(str(error.cause), self._source.tally()))

    def _progressing(self) -> Condition | None:
        return self.latest.condition(ConditionType.PROGRESSING)

    async def _unavailable(self, error: StorageUnavailable) -> float | None:
        return await self._context.storage_unavailable(
            error, since=self._progressing(), write=self.write, jitter=self._jitter()
        )

    async def _finish(self, outcome: Outcome) -> float | None:
        """The run's end written, announced as every run announces it; when to run again. A finished
        object's erasure receipt is written first: without it the object does not finish, and waits
        as for a storage outage."""
        if outcome.phase.finished and self._receipts is not None:
            try:
                self._receipt = await self._receipts.write(
                    self._context,
                    self._context.spec,
                    self._status(outcome),
                    storage=self._storage_name,
                    recoverable_seconds=self._recoverable_seconds,
                )
            except StorageUnavailable as error:
                return await self._unavailable(error)
            self._context.logger.info("Receipt written: %s:%s", self._receipt.storage, self._receipt.key)
        await self.write(outcome)
        return announce(self._context, outcome, self.latest.failed_keys, self._metrics, self._storage_name)
