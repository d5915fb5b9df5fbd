"""Layer run. Where a run's keys come from and how its progress is written down (``KeySource``), the
one seam between the kinds of deletion. ``InlineKeys`` is an object's own ``spec.keys``, its progress
index ranges in status; ``ManifestKeys`` (manifest_keys.py) is a manifest's lines, its progress byte
offsets and signed failure reports. Everything else a run does (the round, checkpoints, the stop rule,
the deadline, maxFailedKeys, the retry decision, events and metrics) is ``ObjectRun``'s, once for
every source."""

from __future__ import annotations

import datetime
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

from filecleanup.api.models import Condition, FileCleanupStatus
from filecleanup.api.wording import plural
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome, Tally
from filecleanup.decide.progress import Progress
from filecleanup.decide.status import next_status
from filecleanup.run.rounds import RoundWork, checkpoint_interval
from filecleanup.storage import ChunkResult, StorageUnavailable
from filecleanup.storage.base import ObjectMissing, ObjectRefused

PartT = TypeVar("PartT", bound=RoundWork[Any])
Write = Callable[[Outcome], Awaitable[None]]


class ProgressNotSaved(Exception):  # noqa: N818  (it names what happened, as ObjectMissing does)
    """What a source had to save at a checkpoint (a failure report's segment) the storage did not
    take: the keys since the last save stay pending, and status stays as of that save."""

    def __init__(self, cause: StorageUnavailable | ObjectRefused | ObjectMissing) -> None:
        super().__init__(str(cause))
        self.cause = cause


class KeySource(Protocol[PartT]):
    """Where a run's keys come from and how its progress is written down. A round is one or more
    parts (each a ``RoundWork`` that ``rounds.send_chunks`` sends); between parts and at its end the
    run asks the source what its parts came to, and decides the rest itself."""

    # Where a run whose status is not trusted starts over from ("the keys", "the manifest").
    origin: str

    def untrusted(self) -> str | None:
        """Why the status read cannot be followed, if it cannot (the run then starts over)."""
        ...

    def start_over(self) -> None:
        """Forget the progress read from status: the run starts from the first key again."""
        ...

    def redrive(self) -> str:
        """Give the failed keys a fresh retry budget; what the Redriven event says."""
        ...

    async def prepare(self, write: Write, *, since: Condition | None, resuming: bool) -> Outcome | None:
        """Whatever must come before the first call (a manifest is read through and checked), writing
        status as it goes; an outcome that ends the run there, or None. ``since``: the Progressing
        condition as the run found it; ``resuming``: a run that started or was redriven."""
        ...

    def deleting(self) -> Outcome:
        """What the status says while the round's calls go out."""
        ...

    def checkpoint_seconds(self, configured: float) -> float:
        """Seconds between checkpoints, from the configured interval."""
        ...

    def parts(self, halt: Callable[[], None]) -> Iterator[PartT]:
        """The parts of the round still to send, in order; ``halt`` stops the round at once (a key
        read back that the gate refused)."""
        ...

    async def save(self, part: PartT) -> None:
        """Make what the part recorded durable; raises :class:`ProgressNotSaved`."""
        ...

    def part_ended(self, part: PartT) -> Outcome | None:
        """An outcome that ends the run after ``part`` (its source unreadable, a key refused)."""
        ...

    def next_part(self, part: PartT) -> bool:
        """Move past a part sent through; whether another part of the round follows."""
        ...

    def round_ended(self) -> Outcome | None:
        """An outcome that ends the run once every part is sent (its source miscounted), or None."""
        ...

    def tally(self) -> Tally:
        """Where the round stands, as every decision reads it."""
        ...

    def next_round(self) -> None:
        """Set the next round up: only the keys that failed, which the status then holds, waiting."""
        ...

    def status(
        self,
        previous: FileCleanupStatus,
        outcome: Outcome,
        *,
        storage: str,
        generation: int | None,
        now: datetime.datetime,
    ) -> FileCleanupStatus:
        """The whole status for ``outcome``, with the progress as saved."""
        ...


class KeysRound:
    """A round over an object's own keys (its Progress), as ``rounds.send_chunks`` sends it."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    async def chunks(self) -> AsyncGenerator[list[int], None]:
        for chunk in self._progress.chunks():
            yield chunk

    def keys(self, chunk: list[int]) -> list[str]:
        return self._progress.chunk_keys(chunk)

    def record(self, chunk: list[int], result: ChunkResult) -> None:
        self._progress.record(chunk, result)


class InlineKeys:
    """An object's own ``spec.keys``: one part per round, progress as index ranges in status (the
    plan rebuilt it from status, or started it afresh when status could not be trusted)."""

    origin = "the keys"

    def __init__(self, progress: Progress, *, untrusted: str | None = None) -> None:
        self._progress = progress
        self._untrusted = untrusted

    def untrusted(self) -> str | None:
        return self._untrusted

    def start_over(self) -> None:
        """Nothing to forget: the plan started the progress afresh."""

    def redrive(self) -> str:
        return f"redriving {plural(len(self._progress.pending), 'failed key')} with a fresh retry budget"

    async def prepare(
        self,
        write: Write,  # noqa: ARG002  (nothing comes before the calls)
        *,
        since: Condition | None,  # noqa: ARG002
        resuming: bool,  # noqa: ARG002
    ) -> Outcome | None:
        # No status write before the first checkpoint: a round that ends sooner costs one write, the
        # final one, instead of two; a crash before it re-sends less than one checkpoint interval of
        # work, as after any checkpoint.
        return None

    def deleting(self) -> Outcome:
        return outcomes.deleting(len(self._progress.pending), self._progress.chunk_size)

    def checkpoint_seconds(self, configured: float) -> float:
        return checkpoint_interval(configured, self._progress.total)

    def parts(self, halt: Callable[[], None]) -> Iterator[KeysRound]:  # noqa: ARG002  (no key is read back)
        yield KeysRound(self._progress)

    async def save(self, part: KeysRound) -> None:
        """Nothing to save apart from status."""

    def part_ended(self, part: KeysRound) -> Outcome | None:  # noqa: ARG002  (the keys are in the spec)
        return None

    def next_part(self, part: KeysRound) -> bool:  # noqa: ARG002  (a round is one part)
        return False

    def round_ended(self) -> Outcome | None:
        return None

    def tally(self) -> Tally:
        return Tally.of(self._progress)

    def next_round(self) -> None:
        self._progress.begin_retry_round()

    def status(
        self,
        previous: FileCleanupStatus,
        outcome: Outcome,
        *,
        storage: str,
        generation: int | None,
        now: datetime.datetime,
    ) -> FileCleanupStatus:
        return next_status(
            previous,
            progress=self._progress,
            storage=storage,
            outcome=outcome,
            generation=generation,
            now=now,
        )
