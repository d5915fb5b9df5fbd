"""Layer run. A deletion by prefix (spec.prefix): the keys under it are listed once, and the listing is
kept in the storage, under the prefix, as the run's manifest (run/manifest_keys.py reads it), so that
a restart resumes exactly where the last checkpoint stood, as a manifest's does. Every listed key is
checked against the key rules and the policy when it is listed, and again when it is sent; a key no
FileCleanup key can name is left, and counted. Once the object Succeeded, the listing and its failure
reports go too, so that nothing is left under the prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from filecleanup.api.gate import KeyGate
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import ConditionType, DryRunCounts, Listing
from filecleanup.api.wording import agreeing, plural
from filecleanup.decide import outcomes
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.status import dry_run_status, listing_status
from filecleanup.run.context import ObjectContext, announce
from filecleanup.storage import Storage, StorageUnavailable
from filecleanup.storage.errors import ObjectError

LISTING_NAME = ".filecleanup-listing-"
SKIPPED_SHOWN = 10


@dataclass
class Listed:
    keys: list[str]
    skipped: list[str]


async def list_prefix(storage: Storage, prefix: str, gate: KeyGate) -> Listed:
    """The keys under ``prefix`` that ``gate`` admits, in the storage's order; and the others."""
    listed = Listed([], [])
    async for page in storage.list_keys(prefix):
        for key in page:
            (listed.keys if gate.problem(key) is None else listed.skipped).append(key)
    return listed


def listing_key(prefix: str, uid: str) -> str:
    return f"{prefix}{LISTING_NAME}{uid}.txt"


async def prepare(
    context: ObjectContext, storage: Storage, gate: KeyGate, metrics: Metrics, jitter: Callable[[], float]
) -> ObjectContext | float | None:
    """The object with its listing (``status.listing``), made now if it has none: listed, kept in the
    storage, and recorded in status before anything is sent. Else the run ends here, written and
    announced (nothing under the prefix, or no listing possible: None), or waits out an outage (its
    delay)."""
    if context.status.listing is not None:
        return context
    prefix = context.spec.prefix
    assert prefix is not None  # noqa: S101  (only a prefix object gets here)
    latest = context.status

    async def write(outcome: Outcome, listing: Listing | None = None) -> None:
        nonlocal latest
        latest = listing_status(
            latest,
            storage=storage.name,
            listing=listing,
            outcome=outcome,
            generation=context.generation,
            now=context.clock(),
        )
        await context.sink.write(latest)

    progressing = latest.condition(ConditionType.PROGRESSING)
    if not outcomes.in_outage(progressing):  # one write per outage
        await write(outcomes.listing_prefix(prefix))
    key = listing_key(prefix, context.uid)
    try:
        listed = await list_prefix(storage, prefix, gate)
        if not listed.keys:
            ended = outcomes.prefix_empty(prefix, len(listed.skipped))
            await write(ended)
            return announce(context, ended, [], metrics, storage.name)
        data = "".join(f"{line}\n" for line in listed.keys).encode()
        await storage.write(key, data)
    except StorageUnavailable as error:
        return await context.storage_unavailable(error, since=progressing, write=write, jitter=jitter())
    except ObjectError as error:
        ended = outcomes.prefix_refused(f"the keys under {prefix} cannot be listed and kept: {error}")
        await write(ended)
        return announce(context, ended, [], metrics, storage.name)
    listing = Listing(
        key=key,
        listed=len(listed.keys),
        skipped=len(listed.skipped),
        skipped_keys=listed.skipped[:SKIPPED_SHOWN],
        sha256=hashlib.sha256(data).hexdigest(),
    )
    await write(outcomes.deleting(len(listed.keys), context.spec.chunk_size, key), listing)
    if listed.skipped:
        context.logger.warning(
            "%s under %s cannot be named by a FileCleanup key and %s left, e.g. %s",
            plural(len(listed.skipped), "key"),
            prefix,
            agreeing(len(listed.skipped), "was", "were"),
            listed.skipped[0],
        )
    return dataclasses.replace(context, status=latest)


async def remove_listing(context: ObjectContext, storage: Storage, gate: KeyGate) -> None:
    """After success: the listing and its failure reports go, so that nothing is left under the
    prefix. What cannot go now is said in the log and stays (it is the operator's own)."""
    listing = context.status.listing
    if listing is None:
        return
    try:
        keys = [listing.key]
        async for page in storage.list_keys(f"{listing.key}.report/"):
            keys += page
        for start in range(0, len(keys), context.spec.chunk_size):
            result = await storage.delete(keys[start : start + context.spec.chunk_size], gate=gate)
            if result.failed:
                context.logger.warning("Listing files left under the prefix: %s", sorted(result.failed)[:3])
    except (StorageUnavailable, ObjectError) as error:
        context.logger.warning("The listing %s was left under the prefix: %s", listing.key, error)


async def dry_run(
    context: ObjectContext, storage: Storage, gate: KeyGate, jitter: Callable[[], float]
) -> float | None:
    """A dry run of a prefix counts what would go: the keys listed (the storage has each), and those
    no FileCleanup key can name (forbidden). Nothing is kept or deleted."""
    prefix = context.spec.prefix
    assert prefix is not None  # noqa: S101  (only a prefix object gets here)
    latest = context.status

    async def write(outcome: Outcome, counts: DryRunCounts | None = None, total: int = 0) -> None:
        nonlocal latest
        latest = dry_run_status(
            latest,
            spec=context.spec,
            storage=storage.name,
            total=total,
            counts=counts,
            outcome=outcome,
            generation=context.generation,
            now=context.clock(),
        )
        await context.sink.write(latest)

    progressing = latest.condition(ConditionType.PROGRESSING)
    try:
        listed = await list_prefix(storage, prefix, gate)
    except StorageUnavailable as error:
        return await context.storage_unavailable(error, since=progressing, write=write, jitter=jitter())
    except ObjectError as error:
        outcome = outcomes.prefix_refused(f"the keys under {prefix} cannot be listed: {error}")
        await write(outcome)
        context.post_event("Warning", outcome.reason, outcome.message)
        return None
    total = len(listed.keys) + len(listed.skipped)
    counts = DryRunCounts(would_delete=len(listed.keys), forbidden=len(listed.skipped))
    outcome = outcomes.dry_run_done(counts, total)
    await write(outcome, counts, total)
    context.post_event("Normal", outcome.reason, outcome.message)
    context.logger.info("Dry run: %s", outcome.message)
    return None
