"""Pure decision logic: spec + status (+ the clock) -> what to do next, and the status that follows.

No I/O here; ``handlers.py`` and ``runner.py`` carry the decisions out.

A *round* sends every key in ``pending`` once, in chunks. A key the storage confirms is deleted; any
other key goes to ``failed``. When a round ends with failures and budget left, the next round is set up
at once (``retries`` + 1, ``pending`` = the failed keys) and waits in phase Backoff until
``nextRetryTime``. A round interrupted because the storage is unavailable keeps its pending keys and
waits too, without using budget.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from filecleanup.config import StoragePolicy
from filecleanup.indexes import IndexRangeError, format_ranges, parse_ranges
from filecleanup.models import (
    MAX_LISTED_FAILED_KEYS,
    Backoff,
    Condition,
    ConditionType,
    FailedKey,
    FileCleanupSpec,
    FileCleanupStatus,
    ManifestProgress,
    Phase,
)
from filecleanup.redaction import redact
from filecleanup.storage.base import NOT_CONFIRMED, ChunkResult

JITTER_FRACTION = 0.2
MAX_RETRY_AFTER_SECONDS = 3600.0
EARLIER_ERROR = "failed in an earlier round"
MAX_ERROR_LENGTH = 256  # a storage's error text is kept short: status must stay small
# A requeue that wakes this close to nextRetryTime runs; waiting again would cost a write for nothing.
WAKE_TOLERANCE_SECONDS = 1.0


class Reason:
    DELETING = "Deleting"
    RETRY_SCHEDULED = "RetryScheduled"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    SUCCEEDED = "Succeeded"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    REDRIVEN = "Redriven"
    UNKNOWN_STORAGE = "UnknownStorage"
    INVALID_CHUNK_SIZE = "InvalidChunkSize"
    FORBIDDEN = "Forbidden"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    INTERNAL_ERROR = "InternalError"
    INVALID_STATUS = "InvalidStatus"
    INVALID_SPEC = "InvalidSpec"
    STORAGE_CHANGED = "StorageChanged"
    INVALID_MANIFEST = "InvalidManifest"
    MANIFEST_MISSING = "ManifestMissing"


class InvalidStatus(ValueError):  # noqa: N818  (the condition's reason: InvalidStatus)
    """A status the operator cannot have written for this object: it is not trusted."""


def readable_error(text: str) -> str:
    """A storage's error text as status shows it: secrets redacted, one printable line, short."""
    printable = "".join(character if character.isprintable() else " " for character in redact(text))
    return printable[:MAX_ERROR_LENGTH]


def unique_indexes(keys: Sequence[str]) -> list[int]:
    """The index of each key's first occurrence: duplicates are deleted once."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    return sorted(first.values())


def backoff_delay(backoff: Backoff, retry_round: int, jitter: float) -> float:
    """Seconds before retry round ``retry_round`` (1 for the first retry): doubling, capped, jittered.

    ``jitter`` is a sample from [0, 1); it shortens the delay by up to 20 %, so the cap still holds.
    """
    return _capped_with_jitter(backoff, backoff.initial_seconds * 2.0 ** max(0, retry_round - 1), jitter)


def unavailable_delay(
    backoff: Backoff, unavailable_for: float, retry_after: float | None, jitter: float
) -> float:
    """Seconds to wait while the storage is unavailable.

    ``Retry-After`` wins when the storage sent one. Otherwise the wait grows with how long the
    storage has been unavailable: waiting as long again doubles the total each time, up to the cap.
    """
    if retry_after is not None:
        return min(max(0.0, retry_after), MAX_RETRY_AFTER_SECONDS)
    return _capped_with_jitter(backoff, max(float(backoff.initial_seconds), unavailable_for), jitter)


def _capped_with_jitter(backoff: Backoff, seconds: float, jitter: float) -> float:
    """At most ``backoff.max_seconds``, then shortened by up to 20 % (``jitter`` is from [0, 1))."""
    return min(float(backoff.max_seconds), seconds) * (1.0 - JITTER_FRACTION * jitter)


@dataclass
class Progress:
    """The working state of one object during a round; status is its durable form."""

    keys: Sequence[str]
    total: int
    deleted: int = 0
    retries: int = 0
    redrives: int = 0
    retry_nonce: str | None = None
    chunk_size: int = 100
    pending: dict[int, None] = field(default_factory=dict)  # an ordered set
    failed: dict[int, str] = field(default_factory=dict)
    earlier_errors: dict[int, str] = field(default_factory=dict)
    whole_call_failures: int = 0

    @classmethod
    def start(cls, spec: FileCleanupSpec) -> Progress:
        indexes = unique_indexes(spec.keys)
        return cls(
            keys=spec.keys,
            total=len(indexes),
            chunk_size=spec.chunk_size,
            retry_nonce=spec.retry_nonce,
            pending=dict.fromkeys(indexes),
        )

    @classmethod
    def resume(cls, spec: FileCleanupSpec, status: FileCleanupStatus) -> Progress:
        """Rebuild the round from its checkpoint: only what was not confirmed is sent again.

        Raises :class:`InvalidStatus` when the checkpoint does not describe this object's keys (a
        hand-edited status, or one written for other keys): nothing of it is trusted then.
        """
        listed_errors = {item.key: item.error for item in status.failed_keys}
        try:
            pending = parse_ranges(status.pending_indexes, len(spec.keys))
            failed = parse_ranges(status.failed_indexes, len(spec.keys))
        except IndexRangeError as error:
            raise InvalidStatus(str(error)) from error
        distinct = unique_indexes(spec.keys)
        if not set(pending) | set(failed) <= set(distinct) or set(pending) & set(failed):
            raise InvalidStatus("pendingIndexes and failedIndexes must name distinct keys, each once")
        if status.total != len(distinct) or status.deleted + len(pending) + len(failed) != status.total:
            raise InvalidStatus(
                f"total {status.total} and deleted {status.deleted} do not add up with the indexes for "
                f"{len(distinct)} distinct keys"
            )
        if status.chunk_size is not None and not 1 <= status.chunk_size <= spec.chunk_size:
            raise InvalidStatus(
                f"chunkSize {status.chunk_size} is not between 1 and the spec's {spec.chunk_size}"
            )
        return cls(
            keys=spec.keys,
            total=status.total,
            deleted=status.deleted,
            retries=status.retries,
            redrives=status.redrives,
            retry_nonce=spec.retry_nonce,
            chunk_size=status.chunk_size or spec.chunk_size,
            pending=dict.fromkeys(pending),
            failed={i: listed_errors.get(spec.keys[i], EARLIER_ERROR) for i in failed},
            earlier_errors={i: listed_errors.get(spec.keys[i], EARLIER_ERROR) for i in pending}
            if status.retries or status.redrives
            else {},
        )

    @classmethod
    def redrive(cls, spec: FileCleanupSpec, status: FileCleanupStatus) -> Progress:
        """A Failed object again: only its failed keys, a fresh retry budget, the spec's chunk size."""
        if not status.total:  # rejected before it started: nothing was tried yet
            started = cls.start(spec)
            started.redrives = status.redrives + 1
            return started
        failed = cls.resume(spec, status)
        return cls(
            keys=spec.keys,
            total=failed.total,
            deleted=failed.deleted,
            redrives=status.redrives + 1,
            retry_nonce=spec.retry_nonce,
            chunk_size=spec.chunk_size,
            pending=dict.fromkeys(sorted([*failed.failed, *failed.pending])),
            earlier_errors={**failed.earlier_errors, **failed.failed},
        )

    def chunks(self) -> list[list[int]]:
        ordered = list(self.pending)
        return [ordered[at : at + self.chunk_size] for at in range(0, len(ordered), self.chunk_size)]

    def chunk_keys(self, chunk: Sequence[int]) -> list[str]:
        return [self.keys[index] for index in chunk]

    def record(self, chunk: Sequence[int], result: ChunkResult) -> None:
        """Apply one call's outcome; a key not confirmed as deleted failed this round."""
        for index in chunk:
            if index not in self.pending:
                continue
            del self.pending[index]
            key = self.keys[index]
            if key in result.deleted:
                self.deleted += 1
                self.earlier_errors.pop(index, None)
            else:
                self.failed[index] = readable_error(result.failed.get(key, NOT_CONFIRMED))
        if result.whole_call_failed:
            self.whole_call_failures += 1

    @property
    def failed_count(self) -> int:
        """Keys whose latest attempt failed: this round's failures, plus, in a retry round, the keys
        not yet sent again (each failed in the round before)."""
        return len(self.failed) + (len(self.pending) if self.retrying else 0)

    @property
    def retrying(self) -> bool:
        """Whether the pending keys all failed before: in a retry round, or in a redrive."""
        return bool(self.retries or self.redrives)

    def begin_retry_round(self) -> None:
        """Retry only the failed keys. Halve the chunks after whole-call failures, so that one poison
        key cannot keep failing its neighbours and the failing keys get pinned down."""
        if self.whole_call_failures:
            self.chunk_size = max(1, self.chunk_size // 2)
        self.retries += 1
        self.earlier_errors = self.failed
        self.pending = dict.fromkeys(sorted(self.failed))
        self.failed = {}
        self.whole_call_failures = 0

    def listed_failures(self) -> tuple[list[FailedKey], int]:
        """The first failed keys by position in spec.keys, and how many more there are."""
        entries: list[tuple[int, str, int]] = [
            (i, error, self.retries + 1) for i, error in self.failed.items()
        ]
        if self.retrying:
            entries.extend((i, self.earlier_errors.get(i, EARLIER_ERROR), self.retries) for i in self.pending)
        entries.sort()
        listed = [
            FailedKey(key=self.keys[i], error=error, attempts=attempts)
            for i, error, attempts in entries[:MAX_LISTED_FAILED_KEYS]
        ]
        return listed, len(entries) - len(listed)


@dataclass(frozen=True)
class Finished:
    """Nothing to do: the object already Succeeded or Failed."""


@dataclass(frozen=True)
class Wait:
    """Back-off still running (for example after an operator restart)."""

    seconds: float


@dataclass(frozen=True)
class Reject:
    """The object cannot be processed at all; it becomes Failed and nothing is deleted."""

    reason: str
    message: str


@dataclass(frozen=True)
class Run:
    storage: str
    progress: Progress
    starting: bool
    redrive: bool = False
    deadline: datetime.datetime | None = None  # stop taking new chunks then
    invalid_status: str | None = None  # why the status was not trusted, and the run starts over


@dataclass(frozen=True)
class StorageRules:
    """What the configuration says about one storage, as far as decisions go."""

    policy: StoragePolicy
    max_keys_per_call: int | None = None
    holds_manifests: bool = False  # it serves whole objects: manifests and their reports


@dataclass(frozen=True)
class RunManifest:
    """A manifest's deletion: where it stands is in status.manifest."""

    storage: str
    starting: bool
    redrive: bool = False
    deadline: datetime.datetime | None = None


Action = Finished | Wait | Reject | Run | RunManifest


def plan(  # noqa: PLR0911, PLR0912  (a decision table reads best as one)
    spec: FileCleanupSpec,
    status: FileCleanupStatus,
    *,
    namespace: str,
    storages: Mapping[str, StorageRules],
    default_storage: str,
    now: datetime.datetime,
) -> Action:
    redrive = status.phase == Phase.FAILED and spec.retry_nonce != status.retry_nonce
    if status.phase.finished and not redrive:
        return Finished()
    if status.storage and spec.storage and spec.storage != status.storage:
        return Reject(
            Reason.STORAGE_CHANGED,
            f"spec.storage changed from {status.storage!r} to {spec.storage!r} after the object started: "
            f"its keys on {status.storage!r} would be left behind; create a new FileCleanup instead",
        )
    # Pinned once started: a change of the configured default moves no object in flight.
    storage = status.storage or spec.storage or default_storage
    rejected = _check_storage(spec, namespace, storage, storages)
    if rejected is not None:
        return rejected
    manifest = spec.manifest is not None
    if redrive:
        if manifest:
            return RunManifest(storage, starting=True, redrive=True, deadline=_deadline(spec, now))
        return Run(
            storage,
            Progress.redrive(spec, status),
            starting=True,
            redrive=True,
            deadline=_deadline(spec, now),
        )
    if status.phase == Phase.PENDING or not status.total:
        if manifest:
            return RunManifest(storage, starting=True, deadline=_deadline(spec, now))
        return Run(storage, Progress.start(spec), starting=True, deadline=_deadline(spec, now))
    deadline = _deadline(spec, status.start_time or now)
    if deadline is not None and now >= deadline:
        return Reject(
            Reason.DEADLINE_EXCEEDED,
            f"not done within activeDeadlineSeconds ({spec.active_deadline_seconds})",
        )
    if status.phase == Phase.BACKOFF and status.next_retry_time:
        remaining = (status.next_retry_time - now).total_seconds()
        if deadline is not None:
            remaining = min(remaining, (deadline - now).total_seconds())
        if remaining > WAKE_TOLERANCE_SECONDS:
            return Wait(remaining)
    if manifest:
        return RunManifest(storage, starting=False, deadline=deadline)
    try:
        progress = Progress.resume(spec, status)
    except InvalidStatus as error:
        # Start over from the keys: deletes are idempotent, and the counts are rebuilt from what the
        # storage confirms, so nothing is lost and nothing is counted twice.
        return Run(storage, Progress.start(spec), starting=True, deadline=deadline, invalid_status=str(error))
    return Run(storage, progress, starting=False, deadline=deadline)


def _deadline(spec: FileCleanupSpec, start: datetime.datetime) -> datetime.datetime | None:
    if spec.active_deadline_seconds is None:
        return None
    return start + datetime.timedelta(seconds=spec.active_deadline_seconds)


def _check_storage(  # noqa: PLR0911  (a decision table)
    spec: FileCleanupSpec, namespace: str, storage: str, storages: Mapping[str, StorageRules]
) -> Reject | None:
    """Everything that stops an object before any key is sent: every key is checked."""
    if storage not in storages:
        return Reject(
            Reason.UNKNOWN_STORAGE,
            f"storage {storage!r} is not configured; configured storages: {', '.join(sorted(storages))}",
        )
    rules = storages[storage]
    if rules.max_keys_per_call is not None and spec.chunk_size > rules.max_keys_per_call:
        return Reject(
            Reason.INVALID_CHUNK_SIZE,
            f"chunkSize {spec.chunk_size} is more than storage {storage!r} takes in one call "
            f"({rules.max_keys_per_call})",
        )
    if not rules.policy.allows(namespace):
        return Reject(Reason.FORBIDDEN, f"namespace {namespace!r} may not use storage {storage!r}")
    prefix = rules.policy.prefix_for(namespace)
    if spec.manifest is not None:
        if not rules.holds_manifests:
            return Reject(
                Reason.INVALID_MANIFEST,
                f"storage {storage!r} holds no manifests (an http storage needs objectsUrl)",
            )
        if not spec.manifest.key.startswith(prefix):
            return Reject(
                Reason.FORBIDDEN,
                f"the manifest {spec.manifest.key!r} is outside {prefix!r}, the prefix storage {storage!r} "
                f"allows namespace {namespace!r}; nothing was deleted",
            )
        return None  # its keys are checked when it is read through, before any is sent
    outside = [key for key in spec.keys if not key.startswith(prefix)]
    if outside:
        shown = ", ".join(repr(key) for key in outside[:3])
        return Reject(
            Reason.FORBIDDEN,
            f"{len(outside)} keys are outside {prefix!r}, the prefix storage {storage!r} allows namespace "
            f"{namespace!r}, e.g. {shown}; nothing was deleted",
        )
    return None


def fresh_drive(status: FileCleanupStatus) -> FileCleanupStatus:
    """The status a redrive starts from: a new start time (and deadline), no verdict yet."""
    return status.model_copy(
        update={
            "start_time": None,
            "completion_time": None,
            "internal_errors": 0,
            "conditions": [c for c in status.conditions if c.type == ConditionType.PROGRESSING],
        }
    )


def deadline_exceeded(spec: FileCleanupSpec, progress: Progress) -> Outcome:
    return Outcome(
        Phase.FAILED,
        Reason.DEADLINE_EXCEEDED,
        f"not done within activeDeadlineSeconds ({spec.active_deadline_seconds}); deleted {progress.deleted} "
        f"of {progress.total}, {len(progress.pending) + len(progress.failed)} not deleted",
    )


@dataclass(frozen=True)
class Outcome:
    phase: Phase
    reason: str
    message: str
    delay: float | None = None


def after_round(spec: FileCleanupSpec, progress: Progress, jitter: float) -> Outcome:
    """Decide what follows a round in which every pending key got an answer."""
    if not progress.failed:
        return Outcome(
            Phase.SUCCEEDED, Reason.SUCCEEDED, f"deleted {progress.deleted} of {progress.total} keys"
        )
    if progress.retries >= spec.max_retries:
        return Outcome(
            Phase.FAILED,
            Reason.RETRIES_EXHAUSTED,
            f"{len(progress.failed)} of {progress.total} keys not deleted after "
            f"{progress.retries} retries; deleted {progress.deleted}",
        )
    failed = len(progress.failed)
    progress.begin_retry_round()
    delay = backoff_delay(spec.backoff, progress.retries, jitter)
    return Outcome(
        Phase.BACKOFF,
        Reason.RETRY_SCHEDULED,
        f"retry {progress.retries} of {spec.max_retries} for {failed} failed keys in {delay:.0f} s",
        delay=delay,
    )


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
    unavailable_since = (
        since.last_transition_time
        if since is not None and since.reason == Reason.STORAGE_UNAVAILABLE
        else now
    )
    delay = unavailable_delay(spec.backoff, (now - unavailable_since).total_seconds(), retry_after, jitter)
    return Outcome(Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE, f"{error}; next try in {delay:.0f} s", delay)


def set_condition(conditions: list[Condition], update: Condition) -> list[Condition]:
    """Conditions per the API conventions: lastTransitionTime moves only when the status flips.

    A new reason restarts the clock too: the StorageUnavailable back-off measures from it.
    """
    previous = next((c for c in conditions if c.type == update.type), None)
    if previous is not None and (previous.status, previous.reason) == (update.status, update.reason):
        update = update.model_copy(update={"last_transition_time": previous.last_transition_time})
    return [c for c in conditions if c.type != update.type] + [update]


def _condition(
    condition_type: ConditionType,
    *,
    true: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime.datetime,
) -> Condition:
    return Condition(
        type=condition_type,
        status="True" if true else "False",
        observed_generation=generation,
        last_transition_time=now,
        reason=reason,
        message=message,
    )


def next_status(
    previous: FileCleanupStatus,
    *,
    progress: Progress,
    storage: str,
    outcome: Outcome,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    """The whole status for a checkpoint or a phase change, computed in one place."""
    phase, reason, message, delay = outcome.phase, outcome.reason, outcome.message, outcome.delay
    listed, omitted = progress.listed_failures()
    stamp = functools.partial(_condition, reason=reason, message=message, generation=generation, now=now)
    conditions = set_condition(previous.conditions, stamp(ConditionType.PROGRESSING, true=not phase.finished))
    if phase == Phase.SUCCEEDED:
        conditions = set_condition(conditions, stamp(ConditionType.COMPLETE, true=True))
    if phase == Phase.FAILED:
        conditions = set_condition(conditions, stamp(ConditionType.FAILED, true=True))
    return FileCleanupStatus(
        phase=phase,
        observed_generation=generation,
        storage=storage,
        total=progress.total,
        deleted=progress.deleted,
        failed=progress.failed_count,
        retries=progress.retries,
        redrives=progress.redrives,
        retry_nonce=progress.retry_nonce,
        chunk_size=progress.chunk_size,
        pending_indexes=format_ranges(progress.pending),
        failed_indexes=format_ranges(progress.failed),
        failed_keys=listed,
        failed_keys_omitted=omitted,
        internal_errors=previous.internal_errors,
        start_time=previous.start_time or now,
        completion_time=now if phase.finished else None,
        next_retry_time=now + datetime.timedelta(seconds=delay) if delay is not None else None,
        conditions=conditions,
    )


def rejected_status(
    previous: FileCleanupStatus,
    *,
    spec: FileCleanupSpec,
    storage: str,
    reject: Reject,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    stamp = functools.partial(
        _condition, reason=reject.reason, message=reject.message, generation=generation, now=now
    )
    conditions = set_condition(previous.conditions, stamp(ConditionType.PROGRESSING, true=False))
    conditions = set_condition(conditions, stamp(ConditionType.FAILED, true=True))
    return previous.model_copy(
        update={
            "phase": Phase.FAILED,
            "observed_generation": generation,
            "storage": storage,
            "retry_nonce": spec.retry_nonce,
            "start_time": previous.start_time or now,
            "completion_time": now,
            "conditions": conditions,
        }
    )


def internal_error_status(
    previous: FileCleanupStatus,
    *,
    spec: FileCleanupSpec,
    storage: str,
    error: str,
    generation: int | None,
    now: datetime.datetime,
    jitter: float,
) -> tuple[FileCleanupStatus, Outcome]:
    """An error of the operator's own, counted like a retry round: after ``maxRetries`` more, the
    object is Failed with reason InternalError instead of being tried for ever."""
    count = previous.internal_errors + 1
    if count > spec.max_retries:
        outcome = Outcome(
            Phase.FAILED,
            Reason.INTERNAL_ERROR,
            f"internal error in the operator ({error}) in {count} runs; see the operator's log, then redrive",
        )
    else:
        delay = backoff_delay(spec.backoff, count, jitter)
        outcome = Outcome(
            Phase.BACKOFF,
            Reason.INTERNAL_ERROR,
            f"internal error in the operator ({error}); see its log; run {count} of {spec.max_retries + 1}, "
            f"next in {delay:.0f} s",
            delay,
        )
    stamp = functools.partial(
        _condition, reason=outcome.reason, message=outcome.message, generation=generation, now=now
    )
    conditions = set_condition(
        previous.conditions, stamp(ConditionType.PROGRESSING, true=outcome.phase != Phase.FAILED)
    )
    if outcome.phase == Phase.FAILED:
        conditions = set_condition(conditions, stamp(ConditionType.FAILED, true=True))
    status = previous.model_copy(
        update={
            "phase": outcome.phase,
            "observed_generation": generation,
            "storage": previous.storage or storage,
            "internal_errors": count,
            "start_time": previous.start_time or now,
            "completion_time": now if outcome.phase == Phase.FAILED else None,
            "next_retry_time": None
            if outcome.delay is None
            else now + datetime.timedelta(seconds=outcome.delay),
            "conditions": conditions,
        }
    )
    return status, outcome


def invalid_spec_status(
    previous: FileCleanupStatus, *, message: str, generation: int | None, now: datetime.datetime
) -> FileCleanupStatus:
    stamp = functools.partial(
        _condition, reason=Reason.INVALID_SPEC, message=message, generation=generation, now=now
    )
    conditions = set_condition(previous.conditions, stamp(ConditionType.PROGRESSING, true=False))
    conditions = set_condition(conditions, stamp(ConditionType.FAILED, true=True))
    return previous.model_copy(
        update={
            "phase": Phase.FAILED,
            "observed_generation": generation,
            "start_time": previous.start_time or now,
            "completion_time": now,
            "conditions": conditions,
        }
    )


def manifest_status(
    previous: FileCleanupStatus,
    *,
    storage: str,
    progress: ManifestProgress,
    counts: Counts,
    listed: list[FailedKey],
    outcome: Outcome,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    """The status of a manifest's deletion, for a checkpoint or a phase change."""
    stamp = functools.partial(
        _condition, reason=outcome.reason, message=outcome.message, generation=generation, now=now
    )
    conditions = set_condition(
        previous.conditions, stamp(ConditionType.PROGRESSING, true=not outcome.phase.finished)
    )
    if outcome.phase == Phase.SUCCEEDED:
        conditions = set_condition(conditions, stamp(ConditionType.COMPLETE, true=True))
    if outcome.phase == Phase.FAILED:
        conditions = set_condition(conditions, stamp(ConditionType.FAILED, true=True))
    return FileCleanupStatus(
        phase=outcome.phase,
        observed_generation=generation,
        storage=storage,
        total=counts.total,
        deleted=counts.deleted,
        failed=counts.failed,
        retries=counts.retries,
        redrives=counts.redrives,
        retry_nonce=counts.retry_nonce,
        chunk_size=counts.chunk_size,
        failed_keys=listed[:MAX_LISTED_FAILED_KEYS],
        failed_keys_omitted=max(0, counts.failed - len(listed[:MAX_LISTED_FAILED_KEYS])),
        internal_errors=previous.internal_errors,
        manifest=progress,
        start_time=previous.start_time or now,
        completion_time=now if outcome.phase.finished else None,
        next_retry_time=now + datetime.timedelta(seconds=outcome.delay)
        if outcome.delay is not None
        else None,
        conditions=conditions,
    )


@dataclass
class Counts:
    """A manifest deletion's counts, as status shows them."""

    total: int
    deleted: int
    failed: int
    retries: int
    redrives: int
    retry_nonce: str | None
    chunk_size: int
