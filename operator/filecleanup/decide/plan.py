"""Layer decide. What to do next with an object, from its spec, its status and the clock: the first decision
of every run. Pure: the reconciler carries the decision out."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from filecleanup.api.config import StoragePolicy
from filecleanup.api.models import FileCleanupSpec, FileCleanupStatus, Phase, Reason
from filecleanup.api.wording import agreeing, plural
from filecleanup.decide.outcomes import suspended
from filecleanup.decide.progress import InvalidStatus, Progress

# A requeue that wakes this close to nextRetryTime runs; waiting again would cost a write for nothing.
WAKE_TOLERANCE_SECONDS = 1.0


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

    reason: Reason
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
    lists_keys: bool = False  # it lists the keys under a prefix: deletions by prefix
    signs_reports: bool = True  # the operator has a report key (reportKeyFile): it runs manifests


@dataclass(frozen=True)
class RunManifest:
    """A manifest's deletion: where it stands is in status.manifest."""

    storage: str
    starting: bool
    redrive: bool = False
    deadline: datetime.datetime | None = None


@dataclass(frozen=True)
class Suspend:
    """No calls while suspended: spec.suspend, or the operator-wide pause of the object's storage."""

    storage: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class Recheck:
    """A Succeeded object's re-check is due: look for its keys again, and delete any found."""

    storage: str


@dataclass(frozen=True)
class Grace:
    """Not started, and spec.startAfter still to come: nothing is sent before it."""

    storage: str
    until: datetime.datetime
    seconds: float


@dataclass(frozen=True)
class DryRun:
    """Check which keys exist and delete nothing (spec.dryRun): it starts over at every run, as a
    check sends no delete and costs no retry budget."""

    storage: str
    redrive: bool = False
    deadline: datetime.datetime | None = None


Action = Finished | Wait | Reject | Suspend | Grace | Recheck | Run | RunManifest | DryRun


def plan(  # noqa: PLR0911, PLR0912  (a decision table reads best as one)
    spec: FileCleanupSpec,
    status: FileCleanupStatus,
    *,
    namespace: str,
    storages: Mapping[str, StorageRules],
    default_storage: str,
    now: datetime.datetime,
    paused: frozenset[str] = frozenset(),
) -> Action:
    redrive = status.phase == Phase.FAILED and spec.retry_nonce != status.retry_nonce
    if status.phase.finished and not redrive:
        return _after_success(status, now)
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
    if spec.suspend or storage in paused:
        suspension = suspended(Reason.SUSPENDED if spec.suspend else Reason.OPERATOR_PAUSED, storage)
        return Suspend(storage, suspension.reason, suspension.message)
    # By the clock alone: startAfter is immutable, so only an object that has not started can wait.
    if spec.start_after is not None and now < spec.start_after:
        return Grace(storage, spec.start_after, (spec.start_after - now).total_seconds())
    if spec.dry_run:
        return _dry_run(spec, status, storage, now, redrive=redrive)
    manifest = spec.manifest is not None or spec.prefix is not None  # a prefix's listing is one
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
    held = _held(spec, status, deadline, now)
    if held is not None:
        return held
    if manifest:
        return RunManifest(storage, starting=False, deadline=deadline)
    try:
        progress = Progress.resume(spec, status)
        if status.phase == Phase.HELD:
            progress.release_held()
    except InvalidStatus as error:
        # Start over from the keys: deletes are idempotent, and the counts are rebuilt from what the
        # storage confirms, so nothing is lost and nothing is counted twice.
        return Run(storage, Progress.start(spec), starting=True, deadline=deadline, invalid_status=str(error))
    return Run(storage, progress, starting=False, deadline=deadline)


def _after_success(status: FileCleanupStatus, now: datetime.datetime) -> Finished | Wait | Recheck:
    """A finished object: nothing to do, unless a re-check is to come (then wait for it, or run it)."""
    verification = status.verification
    if status.phase != Phase.SUCCEEDED or verification is None or verification.next_time is None:
        return Finished()
    remaining = (verification.next_time - now).total_seconds()
    if remaining > WAKE_TOLERANCE_SECONDS:
        return Wait(remaining)
    return Recheck(status.storage or "")


def _dry_run(
    spec: FileCleanupSpec, status: FileCleanupStatus, storage: str, now: datetime.datetime, *, redrive: bool
) -> DryRun | Wait | Reject:
    """A dry run's policy is a real run's (checked above, with the same rejections); it waits out a
    storage outage in Backoff like one, and honours activeDeadlineSeconds."""
    if redrive or status.phase == Phase.PENDING or status.start_time is None:
        return DryRun(storage, redrive=redrive, deadline=_deadline(spec, now))
    deadline = _deadline(spec, status.start_time)
    held = _held(spec, status, deadline, now)
    if held is not None:
        return held
    return DryRun(storage, deadline=deadline)


def _held(
    spec: FileCleanupSpec,
    status: FileCleanupStatus,
    deadline: datetime.datetime | None,
    now: datetime.datetime,
) -> Reject | Wait | None:
    """What keeps a started object from running now: its deadline passed, or its back-off (or the
    deadline, whichever comes first) still to wait out. None: it runs."""
    if deadline is not None and now >= deadline:
        return Reject(
            Reason.DEADLINE_EXCEEDED,
            f"not done within activeDeadlineSeconds ({spec.active_deadline_seconds})",
        )
    if status.phase in {Phase.BACKOFF, Phase.HELD} and status.next_retry_time:
        remaining = (status.next_retry_time - now).total_seconds()
        if deadline is not None:
            remaining = min(remaining, (deadline - now).total_seconds())
        if remaining > WAKE_TOLERANCE_SECONDS:
            return Wait(remaining)
    return None


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
    if spec.prefix is not None:
        return _check_prefix(spec.prefix, rules, storage, namespace, prefix)
    if spec.manifest is not None:
        if not rules.holds_manifests:
            return Reject(
                Reason.INVALID_MANIFEST,
                f"storage {storage!r} holds no manifests (an http storage needs objectsUrl)",
            )
        if not rules.signs_reports:
            return Reject(
                Reason.INVALID_MANIFEST,
                "the operator has no reportKeyFile to sign the failure reports of manifests with, so it "
                "runs no manifests; nothing was deleted",
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
            f"{plural(len(outside), 'key')} {agreeing(len(outside), 'is', 'are')} outside {prefix!r}, the "
            f"prefix storage {storage!r} allows namespace {namespace!r}, e.g. {shown}; nothing was deleted",
        )
    return None


def _check_prefix(
    deleted: str, rules: StorageRules, storage: str, namespace: str, allowed: str
) -> Reject | None:
    """A deletion by prefix: a storage that lists and keeps the listing, a report key, and a prefix
    inside the one the namespace is allowed. Every listed key is checked again as it is sent."""
    if not (rules.lists_keys and rules.holds_manifests):
        return Reject(
            Reason.INVALID_SPEC,
            f"storage {storage!r} cannot list keys under a prefix (S3 and filesystem storages can); "
            "nothing was deleted",
        )
    if not rules.signs_reports:
        return Reject(
            Reason.INVALID_MANIFEST,
            "the operator has no reportKeyFile to sign the failure reports of a prefix's listing with, so it "
            "runs no deletion by prefix; nothing was deleted",
        )
    if not deleted.startswith(allowed):
        return Reject(
            Reason.FORBIDDEN,
            f"the prefix {deleted!r} is not inside {allowed!r}, the prefix storage {storage!r} allows "
            f"namespace {namespace!r}; nothing was deleted",
        )
    return None
