"""Layer decide. What follows a round: Succeeded, a retry after a back-off, Failed, or a wait for the
storage. Pure; the outcome names the phase, the reason and the delay, and the status is built from it."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from filecleanup.api.models import Condition, DryRunCounts, FileCleanupSpec, Phase, Reason
from filecleanup.api.wording import agreeing, plural
from filecleanup.decide.backoff import retry_delay, unavailable_delay
from filecleanup.decide.progress import Progress
from filecleanup.storage import holds
from filecleanup.storage.base import ExistsResult


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    reason: Reason
    message: str
    delay: float | None = None


@dataclass(frozen=True)
class Tally:
    """Where a round stands, whatever the keys' source (an object's own keys, or a manifest): what
    every decision about a round reads, so that the decisions are written once for every source."""

    total: int
    deleted: int
    failed: int  # keys of this round that failed, for good or not
    permanent: int  # of those, the keys that failed for good (spec.maxFailedKeys counts them)
    pending: int  # keys of this round not sent yet
    retries: int
    # A manifest's report keeps no error class: a retry round sends its keys failed for good again.
    retries_permanent: bool = False
    report: str = ""  # where every failed key and its error are listed, when not in status
    # Of the keys failed for good, the errors of those the storage holds (decide/holds.py).
    held: tuple[str, ...] = ()

    @classmethod
    def of(cls, progress: Progress) -> Tally:
        return cls(
            total=progress.total,
            deleted=progress.deleted,
            failed=len(progress.failed) + len(progress.permanent),
            permanent=len(progress.permanent),
            pending=len(progress.pending),
            retries=progress.retries,
            held=tuple(error for error, _ in progress.permanent.values() if holds.is_held(error)),
        )

    def too_many_failed(self, max_failed_keys: int | None) -> bool:
        return max_failed_keys is not None and self.permanent > max_failed_keys

    @property
    def listed_at(self) -> str:
        return f"; every failed key and its error: {self.report}*" if self.report else ""


def after_round(spec: FileCleanupSpec, tally: Tally, jitter: float, *, now: datetime.datetime) -> Outcome:
    """Decide what follows a round in which every pending key got an answer. For a retry, the caller
    sets the next round up before the status is built. Keys failed for good (a permanent error) are
    not retried: once only they are left, the object is Failed; or Held, when the storage holds every
    one of them (a legal hold, a retention), until the earliest hold may have passed."""
    retryable = tally.failed if tally.retries_permanent else tally.failed - tally.permanent
    if not tally.failed:
        return Outcome(
            Phase.SUCCEEDED, Reason.SUCCEEDED, f"deleted {tally.deleted} of {plural(tally.total, 'key')}"
        )
    if not retryable and tally.held and len(tally.held) == tally.failed:
        delay = holds.release_in(tally.held, now)
        return Outcome(
            Phase.HELD,
            Reason.KEYS_HELD,
            f"{len(tally.held)} of {plural(tally.total, 'key')} {agreeing(len(tally.held), 'is', 'are')} "
            "held by the storage (legal hold or retention), "
            f"e.g. {tally.held[0].removeprefix(holds.HELD_PREFIX)}; deleted {tally.deleted}; the held keys "
            f"are sent again in {delay:.0f} s",
            delay,
        )
    if not retryable:
        return Outcome(
            Phase.FAILED,
            Reason.PERMANENT_ERRORS,
            f"{tally.permanent} of {plural(tally.total, 'key')} failed with an error no retry can fix; "
            f"deleted {tally.deleted}{tally.listed_at}",
        )
    if tally.retries >= spec.max_retries:
        return Outcome(
            Phase.FAILED,
            Reason.RETRIES_EXHAUSTED,
            f"{tally.failed} of {plural(tally.total, 'key')} not deleted after "
            f"{plural(tally.retries, 'retry', 'retries')}; deleted "
            f"{tally.deleted}{tally.listed_at}",
        )
    retry = tally.retries + 1
    delay = retry_delay(spec.backoff, retry, jitter)
    return Outcome(
        Phase.BACKOFF,
        Reason.RETRY_SCHEDULED,
        f"retry {retry} of {spec.max_retries} for {plural(retryable, 'failed key')} in {delay:.0f} s",
        delay=delay,
    )


def in_outage(progressing: Condition | None) -> TypeGuard[Condition]:
    """Whether the Progressing condition says the storage was already unavailable at the last try."""
    return progressing is not None and progressing.reason == Reason.STORAGE_UNAVAILABLE


def storage_unavailable(
    spec: FileCleanupSpec,
    *,
    since: Condition | None,
    error: str,
    retry_after: float | None,
    now: datetime.datetime,
    jitter: float,
) -> Outcome:
    """The round stops where it is; its pending keys wait without using up their retry budget.

    ``since`` is the Progressing condition: if it already says StorageUnavailable, its transition
    time tells how long the storage has been gone.
    """
    unavailable_since = since.last_transition_time if in_outage(since) else now
    delay = unavailable_delay(spec.backoff, (now - unavailable_since).total_seconds(), retry_after, jitter)
    return Outcome(Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE, f"{error}; next try in {delay:.0f} s", delay)


# A paused object runs again this often to see whether the pause is over (one handler run and one
# write of Kopf's progress each): it resumes within this long of the pause file changing.
PAUSE_RECHECK_SECONDS = 30.0
SUSPENDED_MESSAGE = "suspended (spec.suspend); set it to false to resume"


def grace_period(until: datetime.datetime, seconds: float) -> Outcome:
    """Waiting for spec.startAfter: nothing is sent before it, and deleting the object cancels it."""
    return Outcome(
        Phase.PENDING,
        Reason.GRACE_PERIOD,
        f"grace period: nothing is sent before {until.isoformat()}; deleting the object cancels it "
        "(filecleanup undo NAME)",
        seconds,
    )


def paused_message(storage: str) -> str:
    return f"the operator is paused for storage {storage!r} (its pause file)"


def stopped_early(
    spec: FileCleanupSpec, tally: Tally, *, suspension: Reason | None, storage: str
) -> Outcome | None:
    """What ended a round before every key got an answer, if something did: too many keys failed for
    good, a suspension (spec.suspend or the operator's pause), or the deadline."""
    if tally.too_many_failed(spec.max_failed_keys):
        return max_failed_keys_exceeded(spec, tally)
    if not tally.pending:
        return None
    if suspension is not None:
        return suspended(suspension, storage)
    return deadline_exceeded(spec, tally)


def suspended(reason: Reason, storage: str) -> Outcome:
    """Suspended by spec.suspend (until the spec changes), or by the operator's pause of the storage
    (looked at again every PAUSE_RECHECK_SECONDS)."""
    if reason == Reason.OPERATOR_PAUSED:
        return Outcome(Phase.SUSPENDED, reason, paused_message(storage), PAUSE_RECHECK_SECONDS)
    return Outcome(Phase.SUSPENDED, Reason.SUSPENDED, SUSPENDED_MESSAGE)


def max_failed_keys_exceeded(spec: FileCleanupSpec, tally: Tally) -> Outcome:
    """More keys failed for good than spec.maxFailedKeys: Failed at once, the rest left unsent."""
    return Outcome(
        Phase.FAILED,
        Reason.MAX_FAILED_KEYS_EXCEEDED,
        f"{plural(tally.permanent, 'key')} failed for good, more than maxFailedKeys "
        f"({spec.max_failed_keys}); "
        f"deleted {tally.deleted} of {tally.total}, {tally.pending} not sent{tally.listed_at}",
    )


def deadline_exceeded(spec: FileCleanupSpec, tally: Tally) -> Outcome:
    return Outcome(
        Phase.FAILED,
        Reason.DEADLINE_EXCEEDED,
        f"not done within activeDeadlineSeconds ({spec.active_deadline_seconds}); deleted {tally.deleted} "
        f"of {tally.total}, {tally.total - tally.deleted} not deleted",
    )


def dry_run_counts(results: Iterable[ExistsResult], total: int) -> DryRunCounts:
    """The counts of a dry run over ``total`` distinct keys, from its checks (each key in one check):
    a key no check placed is unknown."""
    existing = missing = forbidden = 0
    for result in results:
        existing += len(result.existing)
        missing += len(result.missing)
        forbidden += len(result.forbidden)
    return DryRunCounts(
        would_delete=existing,
        missing=missing,
        forbidden=forbidden,
        unknown=max(0, total - existing - missing - forbidden),
    )


def dry_run_checking(total: int) -> Outcome:
    return Outcome(
        Phase.IN_PROGRESS, Reason.DRY_RUN, f"dry run: checking {plural(total, 'key')}; nothing is deleted"
    )


def dry_run_done(counts: DryRunCounts, total: int) -> Outcome:
    """A dry run ends Checked: what it found is in the counts, and nothing was deleted."""
    return Outcome(
        Phase.CHECKED,
        Reason.DRY_RUN,
        f"dry run of {plural(total, 'key')}: {counts.would_delete} would be deleted, "
        f"{counts.missing} missing, "
        f"{counts.forbidden} forbidden, {counts.unknown} unknown; nothing was deleted",
    )


def dry_run_deadline_exceeded(spec: FileCleanupSpec) -> Outcome:
    return Outcome(
        Phase.FAILED,
        Reason.DEADLINE_EXCEEDED,
        f"dry run not done within activeDeadlineSeconds ({spec.active_deadline_seconds}); "
        "nothing was deleted",
    )


# What a run says while it works, and why a manifest's run ends early: every Outcome is built here.


def deleting(keys: int, chunk_size: int, source: str = "") -> Outcome:
    """In progress: ``keys`` to delete (``source``: where a manifest's round reads them)."""
    where = f" from {source}" if source else ""
    return Outcome(
        Phase.IN_PROGRESS, Reason.DELETING, f"deleting {plural(keys, 'key')}{where} in chunks of {chunk_size}"
    )


def status_not_trusted(problem: str, start: str) -> Outcome:
    """Status that no run could have written: the run starts over (from ``start``)."""
    return Outcome(
        Phase.IN_PROGRESS,
        Reason.INVALID_STATUS,
        f"status not trusted ({problem}); starting over from {start}",
    )


def listing_prefix(prefix: str) -> Outcome:
    return Outcome(Phase.IN_PROGRESS, Reason.DELETING, f"listing the keys under {prefix}")


def prefix_empty(prefix: str, skipped: int) -> Outcome:
    """A prefix with nothing under it to delete: done at once."""
    were = agreeing(skipped, "was", "were")
    left = f"; {plural(skipped, 'key')} there no FileCleanup key can name {were} left" if skipped else ""
    return Outcome(Phase.SUCCEEDED, Reason.SUCCEEDED, f"no key under {prefix} to delete{left}")


def prefix_refused(why: str) -> Outcome:
    """A prefix whose keys cannot be listed, or whose listing cannot be kept: nothing was deleted."""
    return Outcome(Phase.FAILED, Reason.INVALID_MANIFEST, f"{why}; nothing was deleted")


def checking_manifest(manifest: str) -> Outcome:
    return Outcome(Phase.IN_PROGRESS, Reason.DELETING, f"checking the manifest {manifest}")


def manifest_refused(reason: Reason, why: str) -> Outcome:
    """A manifest refused when it was checked: nothing was deleted."""
    return Outcome(Phase.FAILED, reason, f"{why}; nothing was deleted")


def manifest_keys_forbidden(count: int, shown: list[str]) -> Outcome:
    return manifest_refused(
        Reason.FORBIDDEN, f"{plural(count, 'key')} of the manifest may not be deleted ({'; '.join(shown)})"
    )


def keys_refused(refused: list[str], source: str, tally: Tally) -> Outcome:
    """Keys read back (a manifest's or a report's lines) that the gate refused: never sent."""
    return Outcome(
        Phase.FAILED,
        Reason.FORBIDDEN,
        f"{plural(len(refused), 'key')} read from {source} {agreeing(len(refused), 'was', 'were')} refused "
        "before sending and never sent (e.g. "
        f"{refused[0]}); deleted {tally.deleted} of {tally.total}, the rest of the round not sent",
    )


def source_unusable(reason: Reason, what: str, tally: Tally | None) -> Outcome:
    """A manifest or report that cannot be read on (changed, gone, not a file, a line not signed):
    the run ends with nothing unchecked sent; ``tally`` once the manifest was checked."""
    tail = (
        f"; deleted {tally.deleted} of {tally.total}, the rest not sent" if tally else "; nothing was deleted"
    )
    return Outcome(Phase.FAILED, reason, f"{what}{tail}")


def source_miscounted(source: str, held: int, expected: int, tally: Tally) -> Outcome:
    """A round's source held another number of keys than the round expected: changed outside."""
    return Outcome(
        Phase.FAILED,
        Reason.INVALID_MANIFEST,
        f"{source} held {plural(held, 'key')} where {expected} {agreeing(expected, 'was', 'were')} expected: "
        "it was changed outside the operator; "
        f"deleted {tally.deleted} of {tally.total}",
    )


def report_not_saved(error: str, tally: Tally) -> Outcome:
    """A failure report that can never be written where it must go."""
    return Outcome(
        Phase.FAILED,
        Reason.INVALID_MANIFEST,
        f"a failure report cannot be written ({error}); deleted {tally.deleted} of {tally.total} as of "
        "the last report saved, the rest not confirmed",
    )
