"""What the decision tests share: specs, a round answered by a pretend storage, and the reconciler's
glue between a round's outcome and the next status."""

from __future__ import annotations

import datetime

from filecleanup.api.config import StoragePolicy
from filecleanup.api.models import (
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
)
from filecleanup.decide import outcomes
from filecleanup.decide import plan as planning
from filecleanup.decide import status as statuses
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.plan import StorageRules
from filecleanup.decide.progress import Progress
from filecleanup.storage.base import ChunkResult

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def spec(keys: list[str], **fields: object) -> FileCleanupSpec:
    return FileCleanupSpec.model_validate({"keys": keys, **fields})


def keys(count: int) -> list[str]:
    return [f"albums/1/{i}.jpg" for i in range(count)]


def answer(
    progress: Progress,
    chunk: list[int],
    failing: frozenset[str] | set[str] = frozenset(),
    whole: bool = False,
) -> None:
    requested = progress.chunk_keys(chunk)
    if whole:
        progress.record(chunk, ChunkResult.all_failed(requested, "HTTP 500"))
        return
    confirmed = [key for key in requested if key not in failing]
    progress.record(chunk, ChunkResult.from_reply(requested, confirmed, dict.fromkeys(failing, "boom")))


def answer_round(
    progress: Progress, failing: frozenset[str] | set[str] = frozenset(), whole_failing: bool = False
) -> None:
    for chunk in progress.chunks():
        requested = set(progress.chunk_keys(chunk))
        answer(progress, chunk, failing, whole=whole_failing and bool(requested & failing))


OPEN = StoragePolicy(allowed_namespaces="*", key_prefix="")
STORAGES = {
    "photos": StorageRules(OPEN),
    "videos": StorageRules(OPEN),
    "bucket": StorageRules(OPEN, max_keys_per_call=1000),
    "tenants": StorageRules(
        StoragePolicy(allowed_namespaces=["team-a", "team-b"], key_prefix="t/{namespace}/")
    ),
}


def plan(
    the_spec: FileCleanupSpec, status: FileCleanupStatus, namespace: str = "ns", now: datetime.datetime = NOW
) -> planning.Action:
    return planning.plan(
        the_spec, status, namespace=namespace, storages=STORAGES, default_storage="photos", now=now
    )


def status_after(
    progress: Progress, outcome: Outcome, previous: FileCleanupStatus | None = None
) -> FileCleanupStatus:
    return statuses.next_status(
        previous or FileCleanupStatus(),
        progress=progress,
        storage="photos",
        outcome=outcome,
        generation=1,
        now=NOW,
    )


def conclude(the_spec: FileCleanupSpec, progress: Progress, jitter: float = 0.0) -> Outcome:
    """What the reconciler does when a round ends: decide, and set a retry round up."""
    outcome = outcomes.after_round(the_spec, outcomes.Tally.of(progress), jitter, now=NOW)
    if outcome.phase == Phase.BACKOFF:
        progress.begin_retry_round()
    return outcome
