"""The run of a manifest's deletion (manifests.py has the reading and the progress): read the manifest
through once to check it, then rounds over it and over the failure reports, with the same calls in
flight, checkpoints, back-off, outage handling and deadline as an object's own keys.

Status only ever holds what is saved: a checkpoint writes the failures since the last one as a report
segment first, and the status written is the one as of that segment (``_durable``). A segment that
cannot be written leaves its keys pending, as a storage outage would, and the counts exact."""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Callable

from filecleanup.api.config import OperatorConfig
from filecleanup.api.gate import KeyGate
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    MAX_LISTED_FAILED_KEYS,
    ConditionType,
    EventReason,
    FailedKey,
    FileCleanupStatus,
    ManifestProgress,
    Phase,
    Reason,
)
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome, in_outage
from filecleanup.decide.progress import Counts
from filecleanup.decide.status import manifest_status, restarted_for_redrive
from filecleanup.run.context import ObjectContext, announce
from filecleanup.run.manifests import (
    ManifestError,
    ReportPlace,
    ReportSigner,
    Source,
    SourceProblem,
    SourceRound,
    check,
    progress_problem,
)
from filecleanup.run.rounds import DEFAULT_SHUTDOWN_SECONDS, StopRule, send_chunks
from filecleanup.storage import Storage, StorageUnavailable
from filecleanup.storage.base import ObjectChanged, ObjectMissing, ObjectRefused, ObjectStore


class ReportNotSavedError(Exception):
    """A report segment the storage did not take."""

    def __init__(self, cause: StorageUnavailable | ObjectRefused | ObjectMissing) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ManifestRun:
    """One run of one manifest object."""

    def __init__(
        self,
        context: ObjectContext,
        config: OperatorConfig,
        storage_name: str,
        storage: Storage,
        *,
        gate: KeyGate,
        signer: ReportSigner,
        metrics: Metrics,
        workers: int,
        jitter: Callable[[], float] = random.random,
        shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
        paused: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        manifest = context.spec.manifest
        if manifest is None:
            raise ValueError("not a manifest object")
        self._context = context
        self._config = config
        self._storage_name = storage_name
        self._storage = storage
        self._gate = gate
        self._signer = signer
        self._metrics = metrics
        self._place = ReportPlace(manifest.key, context.namespace, context.name)
        self._workers = workers
        self._store: ObjectStore = storage  # type: ignore[assignment]  # the plan checked it holds manifests
        self._manifest = manifest.key
        self._jitter = jitter
        self._shutdown_seconds = shutdown_seconds
        self._paused = paused
        # A report segment that could not be written, in a checkpoint during the round: it stops.
        self._report_error: StorageUnavailable | ObjectRefused | ObjectMissing | None = None
        status = context.status
        self.latest = status
        self.progress = (status.manifest or ManifestProgress()).model_copy()
        self.counts = Counts(
            total=status.total,
            deleted=status.deleted,
            failed=status.failed,
            retries=status.retries,
            redrives=status.redrives,
            retry_nonce=context.spec.retry_nonce,
            chunk_size=status.chunk_size or context.spec.chunk_size,
        )
        self.listed: list[FailedKey] = list(status.failed_keys)
        self._durable = self._snapshot()

    async def run(self, *, starting: bool, redrive: bool, deadline: datetime.datetime | None) -> float | None:
        context = self._context
        self._stop = StopRule(
            storage=self._storage_name,
            paused=self._paused,
            too_many_failed=self._too_many_failed,
            deadline=deadline,
            clock=self._context.clock,
        )
        problem = progress_problem(self.latest, self._place)
        if problem is not None:
            await self._start_over(problem)
        if redrive and self.progress.checked:
            self._next_round(fresh_budget=True)
            message = (
                f"redriving {self.progress.round_total} failed keys of the manifest with a fresh retry budget"
            )
            context.post_event("Normal", EventReason.REDRIVEN, message)
            self.latest = restarted_for_redrive(self.latest)
        try:
            if not self.progress.checked:
                rejected = await self._check()
                if rejected is not None:
                    return await self._finish(rejected)
            elif starting or redrive:
                await self._write(self._deleting())
            return await self._rounds()
        except ReportNotSavedError as error:
            return await self._report_not_saved(error.cause)
        except (ObjectMissing, ObjectChanged, ObjectRefused, ManifestError) as error:
            return await self._finish(self._source_failed(error, f"the manifest {self._manifest}"))
        except StorageUnavailable as error:
            return await self._unavailable(error)

    async def _report_not_saved(
        self, error: StorageUnavailable | ObjectRefused | ObjectMissing
    ) -> float | None:
        """A report segment could not be written: its keys stay pending (status is as of the last
        segment saved). An outage is waited out; a place no report can ever be written ends the run."""
        if isinstance(error, StorageUnavailable):
            return await self._unavailable(error)
        return await self._finish(outcomes.report_not_saved(str(error), self._tally()))

    async def _start_over(self, problem: str) -> None:
        """Status that cannot be true is not followed: the run starts over from the manifest, which
        is checked again (deletes are idempotent, and the counts are rebuilt)."""
        restart = outcomes.status_not_trusted(problem, "the manifest")
        self.latest = FileCleanupStatus()
        self.progress = ManifestProgress()
        self.counts = dataclasses.replace(
            self.counts, total=0, deleted=0, failed=0, retries=0, chunk_size=self._context.spec.chunk_size
        )
        self.listed = []
        self._commit()
        await self._write(restart)
        self._context.post_event("Warning", Reason.INVALID_STATUS, restart.message)
        self._context.logger.warning("Invalid status: %s", restart.message)

    async def _check(self) -> Outcome | None:
        """Read the manifest through once: count its keys, and find any that may not be deleted."""
        if not in_outage(self.latest.condition(ConditionType.PROGRESSING)):  # one write per outage
            await self._write(outcomes.checking_manifest(self._manifest))
        unstorable = self._place.problem()
        if unstorable is not None:
            return outcomes.manifest_refused(Reason.INVALID_MANIFEST, unstorable)
        checked = await check(self._store, self._manifest, self._gate)
        if checked.problem_count:
            return outcomes.manifest_keys_forbidden(checked.problem_count, checked.problems)
        if not checked.total:
            return outcomes.manifest_refused(Reason.INVALID_MANIFEST, "the manifest lists no keys")
        self.counts.total = checked.total
        self.progress = ManifestProgress(
            checked=True, round_total=checked.total, version=checked.version, size=checked.size
        )
        self._commit()
        await self._write(self._deleting())
        return None

    def _deleting(self) -> Outcome:
        return outcomes.deleting(self.progress.round_total, self.counts.chunk_size, self._round_source())

    def _round_source(self) -> str:
        """What the round reads: the manifest, or the report of the round before."""
        return (
            "the manifest" if self.progress.round == 0 else f"the report of round {self.progress.round - 1}"
        )

    def _source(self) -> SourceRound:
        """The part of the round that reads the source the progress is at: the manifest, pinned to the
        version checked; or a segment of the last round's report, whose lines must be signed."""
        progress = self.progress
        if progress.round == 0:
            source = Source(self._store, self._manifest, progress.version)
            return SourceRound(source, progress, self.counts.chunk_size, on_refused=self._stop.halt)
        segment = Source(self._store, self._place.key(progress.round - 1, progress.source))
        return SourceRound(
            segment,
            progress,
            self.counts.chunk_size,
            signed_by=(self._signer, self._place),
            on_refused=self._stop.halt,
        )

    async def _rounds(self) -> float | None:
        context = self._context
        deleting = self._deleting()
        while self.progress.source < self.progress.sources:
            part = self._source()
            base_deleted = self.counts.deleted

            async def checkpoint(part: SourceRound = part, base_deleted: int = base_deleted) -> None:
                if self._report_error is not None:
                    return
                try:
                    await self._save(part, base_deleted, deleting)
                except ReportNotSavedError as error:
                    self._report_error = error.cause
                    self._stop.halt()

            unavailable = await send_chunks(
                part,
                self._storage,
                gate=self._gate,
                workers=self._workers,
                checkpoint_interval=self._config.status_interval_seconds,
                checkpoint=checkpoint,
                stop=self._stop,
                shutdown_seconds=self._shutdown_seconds,
            )
            if self._report_error is not None:
                return await self._report_not_saved(self._report_error)
            if unavailable is not None:
                await self._save(part, base_deleted, None)
                return await self._unavailable(unavailable)
            if part.refused:
                await self._save(part, base_deleted, None)
                return await self._finish(self._refused(part))
            if part.problem is not None:
                await self._save(part, base_deleted, None)
                return await self._finish(self._source_failed(part.problem, self._source_name()))
            if self._stop.stopped():
                await self._save(part, base_deleted, None)
                stopped = outcomes.stopped_early(
                    context.spec, self._tally(), suspension=self._stop.suspension, storage=self._storage_name
                )
                if stopped is not None:  # where it stands: a suspended one is resumed from here
                    return await self._finish(stopped)
            if part.whole_call_failures:
                self.counts.chunk_size = max(1, self.counts.chunk_size // 2)
            await self._save(part, base_deleted, None)
            progress = self.progress
            progress.source, progress.offset, progress.done = progress.source + 1, 0, ""
            self._commit()
            await self._write(deleting)
        return await self._round_over()

    def _too_many_failed(self) -> bool:
        """More keys of this round than spec.maxFailedKeys failed for good. Counted per round: a
        report does not record the class, so a key that failed for good is sent again next round."""
        return self._tally().too_many_failed(self._context.spec.max_failed_keys)

    def _tally(self) -> outcomes.Tally:
        """The round as the shared decisions read it (outcomes.py)."""
        progress = self.progress
        return outcomes.Tally(
            total=self.counts.total,
            deleted=self.counts.deleted,
            failed=progress.failed_now,
            permanent=progress.permanent_now,
            pending=progress.round_total - progress.sent,
            retries=self.counts.retries,
            retries_permanent=True,
            report=progress.report if progress.failed_now else "",
        )

    def _refused(self, part: SourceRound) -> Outcome:
        progress = self.progress
        progress.report = self._place.prefix(progress.round)
        self._commit()
        return outcomes.keys_refused(part.refused, self._source_name(), self._tally())

    def _source_failed(self, error: SourceProblem, source: str) -> Outcome:
        """A manifest or report that cannot be read on: the run ends, with nothing unchecked sent."""
        tally = self._tally() if self.progress.checked else None
        match error:
            case ObjectChanged():
                what = f"{source} changed after it was first read; nothing from the new version was sent"
                return outcomes.source_unusable(Reason.MANIFEST_CHANGED, what, tally)
            case ObjectMissing():
                return outcomes.source_unusable(Reason.MANIFEST_MISSING, f"the storage has no {error}", tally)
            case _:
                return outcomes.source_unusable(Reason.INVALID_MANIFEST, f"{source}: {error}", tally)

    async def _save(self, part: SourceRound, base_deleted: int, outcome: Outcome | None) -> None:
        """A checkpoint: the failures since the last one as a report segment, then the status as of
        that segment. Raises what the storage raised if the segment could not be written; the status
        then stays as it was, and the run goes back to it."""
        progress = self.progress
        failures, part.failures = part.failures, []
        segment = progress.segments
        if failures:
            progress.segments += 1
            progress.report = self._place.prefix(progress.round)
        self.counts.deleted = base_deleted + part.deleted
        room = MAX_LISTED_FAILED_KEYS - len(self.listed)
        self.listed += part.listed[:room]
        part.listed = []
        self._update_failed()
        snapshot = self._snapshot()  # as of this instant: the calls go on while the segment is written
        if failures:
            try:
                await self._store.write(
                    self._place.key(progress.round, segment),
                    self._signer.segment(self._place, progress.round, failures),
                )
            except (StorageUnavailable, ObjectRefused, ObjectMissing) as error:
                self.progress, self.counts, self.listed = self._copy(self._durable)
                raise ReportNotSavedError(error) from error
        self._durable = snapshot
        if outcome is not None:
            await self._write(outcome)

    def _update_failed(self) -> None:
        progress = self.progress
        unsent = progress.round_total - progress.sent if progress.round else 0
        self.counts.failed = progress.failed_now + unsent

    async def _round_over(self) -> float | None:
        progress = self.progress
        if progress.sent != progress.round_total:
            return await self._finish(
                outcomes.source_miscounted(
                    self._round_source(), progress.sent, progress.round_total, self._tally()
                )
            )
        outcome = outcomes.after_round(self._context.spec, self._tally(), self._jitter())
        if outcome.phase == Phase.BACKOFF:
            self._next_round(fresh_budget=False)  # the status then holds the next round, waiting
        return await self._finish(outcome)

    def _next_round(self, *, fresh_budget: bool) -> None:
        """The next round reads the report of this one: only its failed keys."""
        progress = self.progress
        self.progress = ManifestProgress(
            checked=True,
            round=progress.round + 1,
            sources=progress.segments,
            round_total=progress.failed_now,
            report=progress.report,
            version=progress.version,
            size=progress.size,
        )
        self.listed = []
        if fresh_budget:
            self.counts.retries = 0
            self.counts.redrives += 1
            self.counts.chunk_size = self._context.spec.chunk_size
        else:
            self.counts.retries += 1
        self._update_failed()
        self._commit()

    async def _unavailable(self, error: StorageUnavailable) -> float | None:
        return await self._context.storage_unavailable(
            error,
            since=self.latest.condition(ConditionType.PROGRESSING),
            write=self._write,
            jitter=self._jitter(),
        )

    def _source_name(self) -> str:
        progress = self.progress
        if progress.round == 0:
            return f"the manifest {self._manifest}"
        return f"the report segment {self._place.key(progress.round - 1, progress.source)}"

    async def _finish(self, outcome: Outcome) -> float | None:
        """The round's end written, announced as every run announces it; when to run again."""
        await self._write(outcome)
        _, _, listed = self._durable
        return announce(self._context, outcome, listed, self._metrics, self._storage_name)

    Snapshot = tuple[ManifestProgress, Counts, list[FailedKey]]

    def _snapshot(self) -> Snapshot:
        return self._copy((self.progress, self.counts, self.listed))

    @staticmethod
    def _copy(state: Snapshot) -> Snapshot:
        progress, counts, listed = state
        return progress.model_copy(), dataclasses.replace(counts), list(listed)

    def _commit(self) -> None:
        """What is in memory is all saved (no failure waits for its segment): status may show it."""
        self._durable = self._snapshot()

    async def _write(self, outcome: Outcome) -> None:
        progress, counts, listed = self._durable
        status = manifest_status(
            self.latest,
            storage=self._storage_name,
            progress=progress,
            counts=counts,
            listed=listed,
            outcome=outcome,
            generation=self._context.generation,
            now=self._context.clock(),
        )
        stored = await self._context.sink.write(status)
        self.latest = status
        self._stop.saw(stored)
