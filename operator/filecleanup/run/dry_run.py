"""Layer run. A dry run: the policy checked as in a real run (plan.py), then every distinct key asked about
at the storage, chunk by chunk under its limits, and nothing deleted. Its counts go to ``status.dryRun``."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence

from filecleanup.api.gate import KeyGate
from filecleanup.api.models import ConditionType, DryRunCounts, Phase, Reason
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.progress import unique_indexes
from filecleanup.decide.status import dry_run_status
from filecleanup.run.context import ObjectContext
from filecleanup.storage import Storage, StorageUnavailable
from filecleanup.storage.base import ExistsResult


async def dry_run(
    context: ObjectContext,
    storage: Storage,
    *,
    gate: KeyGate,
    workers: int,
    deadline: datetime.datetime | None,
    jitter: Callable[[], float],
) -> float | None:
    """Ask the storage which keys exist, chunk by chunk under its limits, and delete nothing. Every
    run checks every key again: a dry run keeps no progress, so a crash costs only checks."""
    spec = context.spec
    keys = [spec.keys[index] for index in unique_indexes(spec.keys)]
    latest = context.status

    async def write(outcome: Outcome, counts: DryRunCounts | None = None) -> None:
        nonlocal latest
        latest = dry_run_status(
            latest,
            spec=spec,
            storage=storage.name,
            total=len(keys),
            counts=counts,
            outcome=outcome,
            generation=context.generation,
            now=context.clock(),
        )
        await context.sink.write(latest)

    progressing = latest.condition(ConditionType.PROGRESSING)
    if latest.phase != Phase.IN_PROGRESS and not outcomes.in_outage(
        progressing
    ):  # one write per try in an outage
        await write(outcomes.dry_run_checking(len(keys)))
    try:
        remaining = None if deadline is None else max(0.0, (deadline - context.clock()).total_seconds())
        results = await check_existence(storage, gate, keys, spec.chunk_size, workers, remaining)
    except TimeoutError:
        outcome = outcomes.dry_run_deadline_exceeded(spec)
        await write(outcome)
        context.post_event("Warning", outcome.reason, outcome.message)
        context.logger.warning("%s: %s", outcome.reason, outcome.message)
        return None
    except StorageUnavailable as unavailable:
        return await context.storage_unavailable(unavailable, since=progressing, write=write, jitter=jitter())
    counts = outcomes.dry_run_counts(results, len(keys))
    outcome = outcomes.dry_run_done(counts, len(keys))
    await write(outcome, counts)
    context.post_event("Normal", Reason.DRY_RUN, outcome.message)
    context.logger.info("Dry run: %s", outcome.message)
    return None


async def check_existence(  # noqa: PLR0917  (the chunks' one path to the storage)
    storage: Storage,
    gate: KeyGate,
    keys: Sequence[str],
    chunk_size: int,
    workers: int,
    remaining: float | None,
) -> list[ExistsResult]:
    """Every chunk's check, up to chunksInFlightPerObject at a time. Raises
    :class:`StorageUnavailable`, and ``TimeoutError`` once ``remaining`` seconds (to the deadline) are
    up."""
    slots = asyncio.Semaphore(workers)

    async def check(chunk: Sequence[str]) -> ExistsResult:
        async with slots:
            return await storage.exists(chunk, gate=gate)

    async with asyncio.timeout(remaining):
        return list(
            await asyncio.gather(
                *(check(keys[start : start + chunk_size]) for start in range(0, len(keys), chunk_size))
            )
        )
