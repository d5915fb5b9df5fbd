"""Layer run. A manifest as the source of a run's keys (sources.KeySource; manifests.py has the
reading and the reports). The manifest is read through once to check it; round 0 reads it, pinned to
the version checked, and every later round reads the signed failure report of the round before, one
part per report segment. Progress is byte offsets into the part being read.

Status only ever holds what is saved: a checkpoint writes the failures since the last one as a report
segment first, and the status written is the one as of that segment (``_durable``). A segment that
cannot be written leaves its keys pending, as a storage outage would, and the counts exact."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator

from filecleanup.api.gate import KeyGate
from filecleanup.api.models import (
    MAX_LISTED_FAILED_KEYS,
    Condition,
    FailedKey,
    FileCleanupSpec,
    FileCleanupStatus,
    ManifestProgress,
    Reason,
)
from filecleanup.api.wording import plural
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome, Tally, in_outage
from filecleanup.decide.progress import Counts
from filecleanup.decide.status import manifest_status
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
from filecleanup.run.sources import ProgressNotSaved, Write
from filecleanup.storage import StorageUnavailable
from filecleanup.storage.base import ObjectChanged, ObjectMissing, ObjectRefused, ObjectStore

Snapshot = tuple[ManifestProgress, Counts, list[FailedKey]]


class ManifestKeys:
    """The keys of ``spec.manifest``, and the failure reports of its rounds."""

    origin = "the manifest"

    def __init__(
        self,
        spec: FileCleanupSpec,
        status: FileCleanupStatus,
        place: ReportPlace,
        store: ObjectStore,
        *,
        gate: KeyGate,
        signer: ReportSigner,
        manifest: str | None = None,
    ) -> None:
        """``manifest``: the manifest's key, when it is not spec.manifest's (a prefix's listing)."""
        manifest = manifest or (spec.manifest.key if spec.manifest is not None else None)
        if manifest is None:
            raise ValueError("not a manifest object")
        self._spec = spec
        self._status = status
        self._manifest = manifest
        self._place = place
        self._store = store
        self._gate = gate
        self._signer = signer
        self.progress = (status.manifest or ManifestProgress()).model_copy()
        self.counts = Counts(
            total=status.total,
            deleted=status.deleted,
            failed=status.failed,
            retries=status.retries,
            redrives=status.redrives,
            retry_nonce=spec.retry_nonce,
            chunk_size=status.chunk_size or spec.chunk_size,
        )
        self.listed: list[FailedKey] = list(status.failed_keys)
        self._durable = self._snapshot()
        self._base_deleted = self.counts.deleted  # confirmed before the part being sent

    def untrusted(self) -> str | None:
        return progress_problem(self._status, self._place)

    def start_over(self) -> None:
        """The run starts over from the manifest, which is checked again."""
        self.progress = ManifestProgress()
        self.counts = dataclasses.replace(
            self.counts, total=0, deleted=0, failed=0, retries=0, chunk_size=self._spec.chunk_size
        )
        self.listed = []
        self._commit()

    def redrive(self) -> str:
        if not self.progress.checked:
            self.counts.redrives += 1
            self._commit()
            return "redriving: the manifest is checked again, with a fresh retry budget"
        self._next_round(fresh_budget=True)
        failed = plural(self.progress.round_total, "failed key")
        return f"redriving {failed} of the manifest with a fresh retry budget"

    async def prepare(self, write: Write, *, since: Condition | None, resuming: bool) -> Outcome | None:
        if self.progress.checked:
            if resuming:
                await write(self.deleting())
            return None
        try:
            return await self._check(write, since)
        except (ObjectMissing, ObjectChanged, ObjectRefused, ManifestError) as error:
            return self._source_failed(error, f"the manifest {self._manifest}")

    async def _check(self, write: Write, since: Condition | None) -> Outcome | None:
        """Read the manifest through once: count its keys, and find any that may not be deleted."""
        if not in_outage(since):  # one write per outage
            await write(outcomes.checking_manifest(self._manifest))
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
        await write(self.deleting())
        return None

    def deleting(self) -> Outcome:
        return outcomes.deleting(self.progress.round_total, self.counts.chunk_size, self._round_source())

    def checkpoint_seconds(self, configured: float) -> float:
        """As configured: a manifest's status is small, whatever the number of keys."""
        return configured

    def parts(self, halt: Callable[[], None]) -> Iterator[SourceRound]:
        """The manifest, pinned to the version checked; or each segment of the last round's report,
        whose lines must be signed."""
        while self.progress.source < self.progress.sources:
            self._base_deleted = self.counts.deleted
            progress = self.progress
            if progress.round == 0:
                source = Source(self._store, self._manifest, progress.version)
                yield SourceRound(source, progress, self.counts.chunk_size, on_refused=halt)
            else:
                segment = Source(self._store, self._place.key(progress.round - 1, progress.source))
                yield SourceRound(
                    segment,
                    progress,
                    self.counts.chunk_size,
                    signed_by=(self._signer, self._place),
                    on_refused=halt,
                )

    async def save(self, part: SourceRound) -> None:
        """The failures since the last save as a report segment, then the counts as of that segment.
        If the segment could not be written, the progress goes back to the last save."""
        progress = self.progress
        failures, part.failures = part.failures, []
        segment = progress.segments
        if failures:
            progress.segments += 1
            progress.report = self._place.prefix(progress.round)
        self.counts.deleted = self._base_deleted + part.deleted
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
                raise ProgressNotSaved(error) from error
        self._durable = snapshot

    def part_ended(self, part: SourceRound) -> Outcome | None:
        if part.refused:
            self.progress.report = self._place.prefix(self.progress.round)
            self._commit()
            return outcomes.keys_refused(part.refused, self._source_name(), self.tally())
        if part.problem is not None:
            return self._source_failed(part.problem, self._source_name())
        return None

    def next_part(self, part: SourceRound) -> bool:
        """Past one source of the round; chunks halve after whole-call failures, so that one poison
        key cannot keep failing its neighbours."""
        if part.whole_call_failures:
            self.counts.chunk_size = max(1, self.counts.chunk_size // 2)
        progress = self.progress
        progress.source, progress.offset, progress.done = progress.source + 1, 0, ""
        self._commit()
        return progress.source < progress.sources

    def round_ended(self) -> Outcome | None:
        progress = self.progress
        if progress.sent != progress.round_total:
            return outcomes.source_miscounted(
                self._round_source(), progress.sent, progress.round_total, self.tally()
            )
        return None

    def tally(self) -> Tally:
        """Counted per round: a report does not record the error class, so a key that failed for
        good is sent again next round."""
        progress = self.progress
        return Tally(
            total=self.counts.total,
            deleted=self.counts.deleted,
            failed=progress.failed_now,
            permanent=progress.permanent_now,
            pending=progress.round_total - progress.sent,
            retries=self.counts.retries,
            retries_permanent=True,
            report=progress.report if progress.failed_now else "",
        )

    def next_round(self) -> None:
        self._next_round(fresh_budget=False)

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
            self.counts.chunk_size = self._spec.chunk_size
        else:
            self.counts.retries += 1
        self._update_failed()
        self._commit()

    def status(
        self,
        previous: FileCleanupStatus,
        outcome: Outcome,
        *,
        storage: str,
        generation: int | None,
        now: datetime.datetime,
    ) -> FileCleanupStatus:
        progress, counts, listed = self._durable
        return manifest_status(
            previous,
            storage=storage,
            progress=progress,
            counts=counts,
            listed=listed,
            outcome=outcome,
            generation=generation,
            now=now,
        )

    def _round_source(self) -> str:
        """What the round reads: the manifest, or the report of the round before."""
        round_number = self.progress.round
        return "the manifest" if round_number == 0 else f"the report of round {round_number - 1}"

    def _source_name(self) -> str:
        progress = self.progress
        if progress.round == 0:
            return f"the manifest {self._manifest}"
        return f"the report segment {self._place.key(progress.round - 1, progress.source)}"

    def _source_failed(self, error: SourceProblem, source: str) -> Outcome:
        """A manifest or report that cannot be read on: the run ends, with nothing unchecked sent."""
        tally = self.tally() if self.progress.checked else None
        match error:
            case ObjectChanged():
                what = f"{source} changed after it was first read; nothing from the new version was sent"
                return outcomes.source_unusable(Reason.MANIFEST_CHANGED, what, tally)
            case ObjectMissing():
                return outcomes.source_unusable(Reason.MANIFEST_MISSING, f"the storage has no {error}", tally)
            case _:
                return outcomes.source_unusable(Reason.INVALID_MANIFEST, f"{source}: {error}", tally)

    def _update_failed(self) -> None:
        progress = self.progress
        unsent = progress.round_total - progress.sent if progress.round else 0
        self.counts.failed = progress.failed_now + unsent

    def _snapshot(self) -> Snapshot:
        return self._copy((self.progress, self.counts, self.listed))

    @staticmethod
    def _copy(state: Snapshot) -> Snapshot:
        progress, counts, listed = state
        return progress.model_copy(), dataclasses.replace(counts), list(listed)

    def _commit(self) -> None:
        """What is in memory is all saved (no failure waits for its segment): status may show it."""
        self._durable = self._snapshot()
