"""Layer run. One FileCleanup as a run sees it, and its ways to report back (status and events)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from filecleanup.api.models import (
    Condition,
    EventReason,
    FailedKey,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
    Reason,
)
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.retention import Labels
from filecleanup.storage import StorageUnavailable

if TYPE_CHECKING:
    from filecleanup.api.metrics import Metrics

EVENT_KEYS_SHOWN = 5


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class StatusSink(Protocol):
    async def write(self, status: FileCleanupStatus) -> FileCleanupSpec | None:
        """Write the status; the object's spec as the API server returned it with the write, if the
        sink knows it and it is valid (a run notices spec.suspend there, at no extra request)."""
        ...


class LastWritten:
    """A sink that remembers the last status it wrote: what the object says after a run."""

    def __init__(self, sink: StatusSink) -> None:
        self._sink = sink
        self.latest: FileCleanupStatus | None = None

    async def write(self, status: FileCleanupStatus) -> FileCleanupSpec | None:
        stored = await self._sink.write(status)
        self.latest = status
        return stored


@dataclass(frozen=True)
class Next:
    """What follows a run: when to run again (None: only on a change), and the labels the object
    should carry (its retention; None removes a label)."""

    requeue_after: float | None = None
    labels: Labels = field(default_factory=dict)


EventPoster = Callable[[str, Reason | EventReason, str], None]  # (type, reason, message)


@dataclass(frozen=True)
class ObjectContext:
    """One FileCleanup as a run sees it, with its ways to report back."""

    spec: FileCleanupSpec
    status: FileCleanupStatus
    namespace: str
    name: str
    generation: int | None
    sink: StatusSink
    post_event: EventPoster
    logger: logging.Logger | logging.LoggerAdapter[Any]
    status_problem: str | None = None  # why the status read could not be used (it was replaced)
    stored_bytes: int = 0  # an estimate of what the object stores in etcd
    clock: Callable[[], datetime.datetime] = field(default=utcnow)  # the run's time; a test moves it
    erasure_started: datetime.datetime | None = None  # when the album was deleted (decide/erasure.py)
    uid: str = ""
    album: str | None = None  # its album label, where it carries one

    async def storage_unavailable(
        self,
        error: StorageUnavailable,
        *,
        since: Condition | None,
        write: Callable[[Outcome], Awaitable[object]],
        jitter: float,
    ) -> float | None:
        """The run waits out the outage without spending retries: its status says so (``since`` is
        the Progressing condition before), the first try of an outage posts a Warning, every try is
        logged. When to try again."""
        outcome = outcomes.storage_unavailable(
            self.spec,
            since=since,
            error=str(error),
            retry_after=error.retry_after,
            now=self.clock(),
            jitter=jitter,
        )
        await write(outcome)
        if not outcomes.in_outage(since):
            self.post_event("Warning", Reason.STORAGE_UNAVAILABLE, outcome.message)
        self.logger.warning("Storage unavailable: %s", outcome.message)
        return outcome.delay


def announce(
    context: ObjectContext, outcome: Outcome, listed: list[FailedKey], metrics: Metrics, storage: str
) -> float | None:
    """The event, log line and metric of a round's end, whatever the keys' source; when to run
    again."""
    if outcome.phase == Phase.SUSPENDED:
        context.logger.info("Suspended: %s", outcome.message)
    elif outcome.phase == Phase.SUCCEEDED:
        if context.erasure_started is not None:
            erased = (context.clock() - context.erasure_started).total_seconds()
            metrics.erasure_seconds.labels(storage).observe(max(0.0, erased))
        context.post_event("Normal", EventReason.COMPLETED, outcome.message)
        context.logger.info("Completed: %s", outcome.message)
    elif outcome.phase == Phase.FAILED:
        sample = ", ".join(item.key for item in listed[:EVENT_KEYS_SHOWN])
        example = f"; e.g. {sample}" if sample and outcome.reason != Reason.DEADLINE_EXCEEDED else ""
        context.post_event("Warning", outcome.reason, outcome.message + example)
        context.logger.error("%s: %s", outcome.reason, outcome.message)
    else:
        metrics.retry_rounds.labels(storage).inc()
        context.post_event("Normal", Reason.RETRY_SCHEDULED, outcome.message)
        context.logger.info("Retry scheduled: %s", outcome.message)
    return outcome.delay


@dataclass(frozen=True)
class InvalidObject:
    """An object whose spec the models refuse: what is needed to say so."""

    status: FileCleanupStatus
    problem: str
    generation: int | None
    sink: StatusSink
    post_event: EventPoster
    logger: logging.Logger | logging.LoggerAdapter[Any]
