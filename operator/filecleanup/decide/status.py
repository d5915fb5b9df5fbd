"""Layer decide. The status that follows a decision, computed whole in one place and then written once:
conditions per the API conventions, counts and checkpoints from the round's progress."""

from __future__ import annotations

import dataclasses
import datetime
import functools
from typing import Any

from filecleanup.api.indexes import format_ranges
from filecleanup.api.models import (
    MAX_LISTED_FAILED_KEYS,
    Condition,
    ConditionType,
    DryRunCounts,
    FailedKey,
    FileCleanupSpec,
    FileCleanupStatus,
    Listing,
    ManifestProgress,
    Phase,
    Reason,
    Verification,
)
from filecleanup.api.redaction import redact
from filecleanup.api.wording import plural
from filecleanup.decide.backoff import retry_delay
from filecleanup.decide.failed_errors import group_by_error
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.plan import Reject
from filecleanup.decide.progress import Counts, Progress


def restarted_for_redrive(status: FileCleanupStatus) -> FileCleanupStatus:
    """The status a redrive starts from: a new start time (and deadline), no verdict yet."""
    return status.model_copy(
        update={
            "start_time": None,
            "completion_time": None,
            "internal_errors": 0,
            "conditions": [c for c in status.conditions if c.type == ConditionType.PROGRESSING],
        }
    )


def set_condition(conditions: list[Condition], update: Condition) -> list[Condition]:
    """Conditions per the API conventions: lastTransitionTime moves only when the status flips.

    A new reason restarts the clock too: the StorageUnavailable back-off measures from it.
    """
    previous = next((c for c in conditions if c.type == update.type), None)
    if previous is not None and (previous.status, previous.reason) == (update.status, update.reason):
        update = update.model_copy(update={"last_transition_time": previous.last_transition_time})
    return [c for c in conditions if c.type != update.type] + [update]


def phase_conditions(
    conditions: list[Condition], phase: Phase, stamp: functools.partial[Condition]
) -> list[Condition]:
    """Every condition that follows from the phase, stamped with the reason of the moment: a Job's
    (Progressing, then Complete or Failed) and kstatus's (Reconciling, then Ready or Stalled: exactly
    one of the three is True, except while Suspended, when none is: docs/gitops.md). One condition
    carries the message, the Job's one that says the phase (:func:`message_carrier`); the others say
    only their own state, by status and reason."""
    carrier = message_carrier(phase)

    def state(condition_type: ConditionType, *, true: bool) -> Condition:
        made = stamp(condition_type, true=true)
        return made if condition_type == carrier else made.model_copy(update={"message": ""})

    working = not phase.finished and phase != Phase.SUSPENDED
    conditions = set_condition(conditions, state(ConditionType.PROGRESSING, true=working))
    if phase == Phase.SUCCEEDED:
        conditions = set_condition(conditions, state(ConditionType.COMPLETE, true=True))
    if phase == Phase.FAILED:
        conditions = set_condition(conditions, state(ConditionType.FAILED, true=True))
    # A dry run is done, and healthy, but it completed no deletion: Ready, never Complete.
    done = phase in {Phase.SUCCEEDED, Phase.CHECKED}
    conditions = set_condition(conditions, state(ConditionType.READY, true=done))
    conditions = set_condition(conditions, state(ConditionType.RECONCILING, true=working))
    conditions = set_condition(conditions, state(ConditionType.STALLED, true=phase == Phase.FAILED))
    return suspension_conditions(conditions, phase, stamp)


def message_carrier(phase: Phase) -> ConditionType:
    """The condition whose message says what is happening: Complete, Failed, Suspended, Ready for a
    dry run that checked its keys, else Progressing (working, waiting, or held)."""
    match phase:
        case Phase.SUCCEEDED:
            return ConditionType.COMPLETE
        case Phase.CHECKED:
            return ConditionType.READY
        case Phase.FAILED:
            return ConditionType.FAILED
        case Phase.SUSPENDED:
            return ConditionType.SUSPENDED
        case _:
            return ConditionType.PROGRESSING


def _condition(
    condition_type: ConditionType,
    *,
    true: bool,
    reason: Reason,
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


def suspension_conditions(
    conditions: list[Condition], phase: Phase, stamp: functools.partial[Condition]
) -> list[Condition]:
    """A Job's Suspended condition: True while suspended; once it runs again, False (Resumed)."""
    if phase == Phase.SUSPENDED:
        return set_condition(conditions, stamp(ConditionType.SUSPENDED, true=True))
    previous = next((c for c in conditions if c.type == ConditionType.SUSPENDED), None)
    if previous is None or previous.status != "True":
        return conditions
    resumed = stamp(ConditionType.SUSPENDED, true=False).model_copy(
        update={"reason": Reason.RESUMED, "message": "resumed from the checkpoint"}
    )
    return set_condition(conditions, resumed)


def _decided(
    previous: FileCleanupStatus, outcome: Outcome, *, generation: int | None, now: datetime.datetime
) -> dict[str, Any]:
    """What every decision sets, whatever else the status holds: the phase, its conditions stamped
    with the reason and message, the generation seen, and the times."""
    phase, delay = outcome.phase, outcome.delay
    # A message may quote a storage's reply, and a storage may echo what it was sent.
    message = redact(outcome.message)
    stamp = functools.partial(
        _condition, reason=outcome.reason, message=message, generation=generation, now=now
    )
    return {
        "phase": phase,
        "observed_generation": generation,
        "conditions": phase_conditions(previous.conditions, phase, stamp),
        "start_time": previous.start_time or now,
        "completion_time": now if phase.finished else None,
        "next_retry_time": None if delay is None else now + datetime.timedelta(seconds=delay),
    }


def suspended_status(
    previous: FileCleanupStatus,
    *,
    storage: str,
    reason: Reason,
    message: str,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    """Suspended where it stands: the progress is kept as it was checkpointed."""
    decided = _decided(previous, Outcome(Phase.SUSPENDED, reason, message), generation=generation, now=now)
    return previous.model_copy(update={**decided, "storage": previous.storage or storage})


def grace_status(
    previous: FileCleanupStatus,
    *,
    storage: str,
    outcome: Outcome,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    """Waiting for spec.startAfter: Pending, not started (no start time, so the deadline counts from
    the start), the progress as it was."""
    decided = _decided(previous, outcome, generation=generation, now=now)
    decided |= {"start_time": None, "next_retry_time": None}
    return previous.model_copy(update={**decided, "storage": previous.storage or storage})


def listing_status(
    previous: FileCleanupStatus,
    *,
    storage: str,
    listing: Listing | None,
    outcome: Outcome,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    """A deletion by prefix while it lists (or once its listing is kept, before the run reads it)."""
    decided = _decided(previous, outcome, generation=generation, now=now)
    return previous.model_copy(update={**decided, "storage": storage, "listing": listing or previous.listing})


def with_erasure(status: FileCleanupStatus, recoverable_seconds: int | None) -> FileCleanupStatus:
    """A finished status that deleted keys says when they become unrecoverable: its completion plus
    the storage's erasure horizon (None: not known, and not claimed)."""
    if recoverable_seconds is None or status.completion_time is None or not status.deleted:
        return status.model_copy(update={"unrecoverable_after": None})
    after = status.completion_time + datetime.timedelta(seconds=recoverable_seconds)
    return status.model_copy(update={"unrecoverable_after": after})


def with_verification(status: FileCleanupStatus, after_seconds: list[int] | None) -> FileCleanupStatus:
    """A status that just Succeeded, with its re-checks set up (the storage's verify.afterSeconds):
    the first is due that long after completion."""
    if (
        not after_seconds
        or status.phase != Phase.SUCCEEDED
        or status.completion_time is None
        or status.verification is not None
    ):
        return status
    first = status.completion_time + datetime.timedelta(seconds=after_seconds[0])
    return status.model_copy(
        update={"verification": Verification(after_seconds=after_seconds, next_time=first)}
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
    failures = progress.failures()
    listed, omitted = progress.listed_failures(failures)
    return FileCleanupStatus(
        **_decided(previous, outcome, generation=generation, now=now),
        **dataclasses.asdict(progress.counts),
        storage=storage,
        pending_indexes=format_ranges(progress.pending),
        failed_indexes=format_ranges(progress.failed),
        permanent_indexes=format_ranges(progress.permanent),
        failed_errors=group_by_error((index, error) for index, error, _ in failures),
        failed_keys=listed,
        failed_keys_omitted=omitted,
        internal_errors=previous.internal_errors,
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
    decided = _decided(
        previous, Outcome(Phase.FAILED, reject.reason, reject.message), generation=generation, now=now
    )
    return previous.model_copy(update={**decided, "storage": storage, "retry_nonce": spec.retry_nonce})


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
            f"internal error in the operator ({error}) in {plural(count, 'run')}; see the operator's log, "
            "then redrive",
        )
    else:
        delay = retry_delay(spec.backoff, count, jitter)
        outcome = Outcome(
            Phase.BACKOFF,
            Reason.INTERNAL_ERROR,
            f"internal error in the operator ({error}); see its log; run {count} of {spec.max_retries + 1}, "
            f"next in {delay:.0f} s",
            delay,
        )
    decided = _decided(previous, outcome, generation=generation, now=now)
    status = previous.model_copy(
        update={**decided, "storage": previous.storage or storage, "internal_errors": count}
    )
    return status, outcome


def invalid_spec_status(
    previous: FileCleanupStatus, *, message: str, generation: int | None, now: datetime.datetime
) -> FileCleanupStatus:
    decided = _decided(
        previous, Outcome(Phase.FAILED, Reason.INVALID_SPEC, message), generation=generation, now=now
    )
    return previous.model_copy(update=decided)


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
    return FileCleanupStatus(
        **_decided(previous, outcome, generation=generation, now=now),
        **dataclasses.asdict(counts),
        storage=storage,
        failed_keys=listed[:MAX_LISTED_FAILED_KEYS],
        failed_keys_omitted=max(0, counts.failed - len(listed[:MAX_LISTED_FAILED_KEYS])),
        internal_errors=previous.internal_errors,
        manifest=progress,
        listing=previous.listing,
    )


def dry_run_status(
    previous: FileCleanupStatus,
    *,
    spec: FileCleanupSpec,
    storage: str,
    total: int,
    counts: DryRunCounts | None,
    outcome: Outcome,
    generation: int | None,
    now: datetime.datetime,
) -> FileCleanupStatus:
    """The status of a dry run: no progress to keep (nothing is deleted, and a dry run starts over at
    every run), the counts once it is done."""
    return FileCleanupStatus(
        **_decided(previous, outcome, generation=generation, now=now),
        storage=storage,
        total=total,
        redrives=previous.redrives,
        retry_nonce=spec.retry_nonce,
        chunk_size=spec.chunk_size,
        internal_errors=previous.internal_errors,
        dry_run=counts,
    )
