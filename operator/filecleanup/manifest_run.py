"""The run of a manifest's deletion (manifests.py has the reading and the progress): read the manifest
through once to check it, then rounds over it and over the failure reports, with the same calls in
flight, checkpoints, back-off, outage handling and deadline as an object's own keys."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

from filecleanup.backoff import retry_delay
from filecleanup.config import OperatorConfig
from filecleanup.context import ObjectContext, utcnow
from filecleanup.manifests import ManifestError, SourceRound, check, report_key, report_prefix, segment
from filecleanup.models import (
    MAX_LISTED_FAILED_KEYS,
    ConditionType,
    EventReason,
    FailedKey,
    ManifestProgress,
    Phase,
    Reason,
)
from filecleanup.outcomes import Outcome, suspended
from filecleanup.progress import Counts
from filecleanup.rounds import DEFAULT_SHUTDOWN_SECONDS, send_chunks
from filecleanup.status import manifest_status, restarted_for_redrive
from filecleanup.storage import Storage, StorageUnavailable
from filecleanup.storage.base import ObjectMissing, ObjectStore


class ManifestRun:
    """One run of one manifest object."""

    def __init__(
        self,
        context: ObjectContext,
        config: OperatorConfig,
        storage_name: str,
        storage: Storage,
        *,
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
        self._workers = workers
        self._store: ObjectStore = storage  # type: ignore[assignment]  # the plan checked it holds manifests
        self._manifest = manifest.key
        self._jitter = jitter
        self._shutdown_seconds = shutdown_seconds
        self._paused = paused
        # What stopped a round, as seen when it stopped: spec.suspend (in a checkpoint's reply) and the
        # operator's pause of this storage.
        self._suspend_asked = False
        self._pause_seen = False
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

    async def run(self, *, starting: bool, redrive: bool, deadline: datetime.datetime | None) -> float | None:
        context = self._context
        if redrive:
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
            return await self._rounds(deadline)
        except ObjectMissing as missing:
            return await self._finish(
                Outcome(
                    Phase.FAILED,
                    Reason.MANIFEST_MISSING,
                    f"the storage has no {missing}; nothing was deleted",
                )
            )
        except ManifestError as error:
            return await self._finish(
                Outcome(Phase.FAILED, Reason.INVALID_MANIFEST, f"{error}; nothing more was deleted")
            )
        except StorageUnavailable as error:
            return await self._unavailable(error)

    async def _check(self) -> Outcome | None:
        """Read the manifest through once: count its keys, and find any that may not be deleted."""
        await self._write(
            Outcome(Phase.IN_PROGRESS, Reason.DELETING, f"checking the manifest {self._manifest}")
        )
        rules = self._config.storages[self._storage_name].policy
        prefix = rules.prefix_for(self._context.namespace)
        checked = await check(self._store, self._manifest, prefix)
        if checked.problem_count:
            shown = "; ".join(checked.problems)
            return Outcome(
                Phase.FAILED,
                Reason.FORBIDDEN,
                f"{checked.problem_count} keys of the manifest may not be deleted ({shown}); "
                "nothing was deleted",
            )
        if not checked.total:
            return Outcome(Phase.FAILED, Reason.INVALID_MANIFEST, "the manifest lists no keys")
        self.counts.total = checked.total
        self.progress = ManifestProgress(checked=True, round_total=checked.total)
        await self._write(self._deleting())
        return None

    def _deleting(self) -> Outcome:
        source = (
            "the manifest" if self.progress.round == 0 else f"the report of round {self.progress.round - 1}"
        )
        return Outcome(
            Phase.IN_PROGRESS,
            Reason.DELETING,
            f"deleting {self.progress.round_total} keys from {source} in chunks of {self.counts.chunk_size}",
        )

    async def _rounds(self, deadline: datetime.datetime | None) -> float | None:
        progress, context = self.progress, self._context
        deleting = self._deleting()
        while progress.source < progress.sources:
            source = (
                self._manifest
                if progress.round == 0
                else report_key(self._manifest, context.name, progress.round - 1, progress.source)
            )
            part = SourceRound(self._store, source, progress, self.counts.chunk_size)
            base_deleted = self.counts.deleted

            async def checkpoint(part: SourceRound = part, base_deleted: int = base_deleted) -> None:
                await self._save(part, base_deleted, deleting)

            unavailable = await send_chunks(
                part,
                self._storage,
                workers=self._workers,
                checkpoint_interval=self._config.status_interval_seconds,
                checkpoint=checkpoint,
                stop_after=None if deadline is None else (deadline - utcnow()).total_seconds(),
                shutdown_seconds=self._shutdown_seconds,
                stop_when=self._stop,
            )
            if unavailable is not None:
                await self._save(part, base_deleted, None)
                return await self._unavailable(unavailable)
            if self._too_many_failed():
                await self._save(part, base_deleted, None)
                return await self._finish(self._max_failed_keys_exceeded())
            if self._suspend_asked or self._pause_seen:
                reason = Reason.SUSPENDED if self._suspend_asked else Reason.OPERATOR_PAUSED
                suspension = suspended(reason, self._storage_name)
                await self._save(part, base_deleted, suspension)  # where it stands: resumed from here
                context.logger.info("Suspended: %s", suspension.message)
                return suspension.delay
            if deadline is not None and utcnow() >= deadline:
                await self._save(part, base_deleted, None)
                return await self._finish(
                    Outcome(
                        Phase.FAILED,
                        Reason.DEADLINE_EXCEEDED,
                        f"not done within activeDeadlineSeconds ({context.spec.active_deadline_seconds})",
                    )
                )
            if part.whole_call_failures:
                self.counts.chunk_size = max(1, self.counts.chunk_size // 2)
            progress.source, progress.offset, progress.done = progress.source + 1, 0, ""
            await self._save(part, base_deleted, deleting)
        return await self._round_over()

    def _stop(self) -> bool:
        self._pause_seen = self._pause_seen or self._storage_name in self._paused()
        return self._suspend_asked or self._pause_seen or self._too_many_failed()

    def _too_many_failed(self) -> bool:
        """More keys of this round than spec.maxFailedKeys failed for good. Counted per round: a
        report does not record the class, so a key that failed for good is sent again next round."""
        limit = self._context.spec.max_failed_keys
        return limit is not None and self.progress.permanent_now > limit

    def _max_failed_keys_exceeded(self) -> Outcome:
        progress = self.progress
        progress.report = report_prefix(self._manifest, self._context.name, progress.round)
        return Outcome(
            Phase.FAILED,
            Reason.MAX_FAILED_KEYS_EXCEEDED,
            f"{progress.permanent_now} keys failed for good in round {progress.round}, more than "
            f"maxFailedKeys ({self._context.spec.max_failed_keys}); deleted {self.counts.deleted} of "
            f"{self.counts.total}, the rest of the round not sent; every failed key and its error: "
            f"{progress.report}*",
        )

    async def _save(self, part: SourceRound, base_deleted: int, outcome: Outcome | None) -> None:
        """A checkpoint: the failures since the last one as a report segment, then the status."""
        if part.failures:
            key = report_key(self._manifest, self._context.name, self.progress.round, self.progress.segments)
            await self._store.write(key, segment(part.failures))
            self.progress.segments += 1
            part.failures = []
        self.counts.deleted = base_deleted + part.deleted
        room = MAX_LISTED_FAILED_KEYS - len(self.listed)
        self.listed += part.listed[:room]
        part.listed = []
        self._update_failed()
        if outcome is not None:
            await self._write(outcome)

    def _update_failed(self) -> None:
        progress = self.progress
        unsent = progress.round_total - progress.sent if progress.round else 0
        self.counts.failed = progress.failed_now + unsent

    async def _round_over(self) -> float | None:
        progress, spec = self.progress, self._context.spec
        if not progress.failed_now:
            outcome = Outcome(
                Phase.SUCCEEDED,
                Reason.SUCCEEDED,
                f"deleted {self.counts.deleted} of {self.counts.total} keys",
            )
            return await self._finish(outcome)
        progress.report = report_prefix(self._manifest, self._context.name, progress.round)
        if self.counts.retries >= spec.max_retries:
            outcome = Outcome(
                Phase.FAILED,
                Reason.RETRIES_EXHAUSTED,
                f"{progress.failed_now} of {self.counts.total} keys not deleted after "
                f"{self.counts.retries} retries; deleted {self.counts.deleted}; every failed key and its "
                f"error: {progress.report}*",
            )
            return await self._finish(outcome)
        failed = progress.failed_now
        self._next_round(fresh_budget=False)
        delay = retry_delay(spec.backoff, self.counts.retries, self._jitter())
        outcome = Outcome(
            Phase.BACKOFF,
            Reason.RETRY_SCHEDULED,
            f"retry {self.counts.retries} of {spec.max_retries} for {failed} failed keys in {delay:.0f} s",
            delay,
        )
        await self._write(outcome)
        self._context.post_event("Normal", Reason.RETRY_SCHEDULED, outcome.message)
        return delay

    def _next_round(self, *, fresh_budget: bool) -> None:
        """The next round reads the report of this one: only its failed keys."""
        progress = self.progress
        self.progress = ManifestProgress(
            checked=True,
            round=progress.round + 1,
            sources=progress.segments,
            round_total=progress.failed_now,
            report=progress.report,
        )
        self.listed = []
        if fresh_budget:
            self.counts.retries = 0
            self.counts.redrives += 1
            self.counts.chunk_size = self._context.spec.chunk_size
        else:
            self.counts.retries += 1
        self._update_failed()

    async def _unavailable(self, error: StorageUnavailable) -> float | None:
        return await self._context.storage_unavailable(
            error,
            since=self.latest.condition(ConditionType.PROGRESSING),
            write=self._write,
            jitter=self._jitter(),
        )

    async def _finish(self, outcome: Outcome) -> float | None:
        await self._write(outcome)
        if outcome.phase == Phase.SUCCEEDED:
            self._context.post_event("Normal", EventReason.COMPLETED, outcome.message)
            self._context.logger.info("Completed: %s", outcome.message)
        else:
            self._context.post_event("Warning", outcome.reason, outcome.message)
            self._context.logger.error("%s: %s", outcome.reason, outcome.message)
        return None

    async def _write(self, outcome: Outcome) -> None:
        status = manifest_status(
            self.latest,
            storage=self._storage_name,
            progress=self.progress,
            counts=self.counts,
            listed=self.listed,
            outcome=outcome,
            generation=self._context.generation,
            now=utcnow(),
        )
        stored = await self._context.sink.write(status)
        self.latest = status
        # The write's reply carries the spec: a suspension asked for during a round is seen here.
        self._suspend_asked = self._suspend_asked or bool(stored and stored.get("suspend"))
