"""Layer run. The reconciler of one object. It carries out ``plan``'s decision: a deletion from the
object's key source (``ObjectRun``), a dry run, a suspension or a rejection.

Returns how long to wait before the next run; the Kopf handler turns that into a requeue, so no
worker is ever held by a back-off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import random
from collections.abc import Callable

from filecleanup.api.config import OperatorConfig
from filecleanup.api.gate import KeyGate
from filecleanup.api.kube import ObjectGone, StatusSuperseded
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    DEFAULT_CONTROLLER,
    ConditionType,
    EventReason,
    FileCleanupStatus,
    Phase,
    Reason,
)
from filecleanup.api.wording import agreeing, plural
from filecleanup.decide import outcomes
from filecleanup.decide.plan import (
    DryRun,
    Finished,
    Grace,
    Recheck,
    Reject,
    Run,
    RunManifest,
    StorageRules,
    Suspend,
    Wait,
    plan,
)
from filecleanup.decide.retention import finished_labels, verifying
from filecleanup.decide.status import (
    grace_status,
    internal_error_status,
    invalid_spec_status,
    rejected_status,
    restarted_for_redrive,
    suspended_status,
)
from filecleanup.run import prefix
from filecleanup.run.api_reach import ApiReachability
from filecleanup.run.context import EVENT_KEYS_SHOWN, InvalidObject, LastWritten, Next, ObjectContext, utcnow
from filecleanup.run.dry_run import dry_run
from filecleanup.run.manifest_keys import ManifestKeys
from filecleanup.run.manifests import ReportPlace, report_signer
from filecleanup.run.object_run import ObjectRun
from filecleanup.run.receipts import ReceiptWriter
from filecleanup.run.rounds import DEFAULT_SHUTDOWN_SECONDS
from filecleanup.run.sources import InlineKeys, KeySource, PartT
from filecleanup.storage import Storage, StorageUnavailable

SUPERSEDED_RETRY_SECONDS = 1.0
RECHECK_RETRY_SECONDS = 60.0  # a re-check the storage could not answer is tried again this much later


class Reconciler:
    def __init__(
        self,
        config: OperatorConfig,
        storages: dict[str, Storage],
        metrics: Metrics,
        *,
        jitter: Callable[[], float] = random.random,
        shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
        controller: str = DEFAULT_CONTROLLER,
        paused: Callable[[], frozenset[str]] = frozenset,
        api: ApiReachability | None = None,
    ) -> None:
        self._config = config
        self._api = api or ApiReachability(metrics)
        self._paused = paused
        self._controller = controller
        self._storages = storages
        self._metrics = metrics
        self._jitter = jitter
        self._shutdown_seconds = shutdown_seconds
        self._signer = report_signer(config)
        self._rules = {
            name: StorageRules(
                policy=config.storages[name].policy,
                max_keys_per_call=storage.max_keys_per_call,
                holds_manifests=storage.holds_manifests,
                lists_keys=storage.lists_keys,
                signs_reports=self._signer is not None,
            )
            for name, storage in storages.items()
        }
        self._receipts = ReceiptWriter.configured(config, storages)
        self._recoverable_seconds: dict[str, int | None] = {}
        for name in storages:
            horizon = config.storages[name].erasure_horizon()
            self._recoverable_seconds[name] = None if horizon is None else horizon.recoverable_for_seconds
            if horizon is not None:
                metrics.recoverable_seconds.labels(name).set(horizon.recoverable_for_seconds)

    async def run(self, context: ObjectContext) -> Next:
        """One run for one object: the work, then when to run again and the labels that follow."""
        sink = LastWritten(context.sink)
        try:
            delay = await self._run(dataclasses.replace(context, sink=sink))
        except ObjectGone:
            context.logger.info("Deleted while it was handled; nothing more to do")
            return Next()
        except StatusSuperseded as error:
            # Another writer is ahead (a replica that took over while this one was stopped): this run's
            # view is stale. The object is planned again from the status as stored.
            context.logger.warning("Status superseded, not written: %s; handled again from it", error)
            return Next(SUPERSEDED_RETRY_SECONDS)
        return self._next(context, sink, delay)

    def _next(self, context: ObjectContext, sink: LastWritten, delay: float | None) -> Next:
        status = sink.latest or context.status
        if delay is None and verifying(status) and status.verification and status.verification.next_time:
            # Succeeded, with re-checks to come: the handler runs again for each (and after a restart).
            delay = max(1.0, (status.verification.next_time - context.clock()).total_seconds())
        labels = finished_labels(
            context.spec,
            status,
            controller=self._controller,
            retention=self._config.retention,
            stored_bytes=context.stored_bytes,
        )
        return Next(delay, labels)

    async def internal_error(self, context: ObjectContext, error: Exception) -> Next:
        """A run ended in an error of the operator's own: a visible condition and event, and a retry
        within the object's budget; then Failed."""
        context.logger.error(
            "Internal error (%s) while handling the object", type(error).__name__, exc_info=error
        )
        storage = context.spec.storage or self._config.default_storage
        status, outcome = internal_error_status(
            context.status,
            spec=context.spec,
            storage=storage,
            error=type(error).__name__,
            generation=context.generation,
            now=context.clock(),
            jitter=self._jitter(),
        )
        sink = LastWritten(context.sink)
        try:
            await sink.write(status)
        except ObjectGone:
            return Next()
        context.post_event("Warning", Reason.INTERNAL_ERROR, outcome.message)
        return self._next(context, sink, outcome.delay)

    async def invalid_spec(self, context: InvalidObject) -> None:
        """A spec the operator cannot read (only possible when the CRD's schema is missing or older):
        Failed with the reasons, nothing deleted."""
        status = invalid_spec_status(
            context.status, message=context.problem, generation=context.generation, now=utcnow()
        )
        with contextlib.suppress(ObjectGone):
            await context.sink.write(status)
            context.post_event("Warning", Reason.INVALID_SPEC, context.problem)
        context.logger.error("Invalid spec: %s", context.problem)

    async def _run(self, context: ObjectContext) -> float | None:  # noqa: PLR0911  (one case per action)
        now = context.clock()
        # Every log line of the run names the storage (the object's namespace and name come from Kopf).
        storage_name = context.spec.storage or self._config.default_storage
        context = dataclasses.replace(
            context, logger=logging.LoggerAdapter(context.logger, {"storage": storage_name})
        )
        action = plan(
            context.spec,
            context.status,
            namespace=context.namespace,
            storages=self._rules,
            default_storage=self._config.default_storage,
            now=now,
            paused=self._paused(),
        )
        match action:
            case Finished():
                if context.status.observed_generation != context.generation:
                    # A spec change on a finished object (its TTL, say): status says it was seen.
                    await context.sink.write(
                        context.status.model_copy(update={"observed_generation": context.generation})
                    )
                return None
            case Wait(seconds):
                return seconds
            case Suspend(storage, reason, message):
                return await self._suspend(context, storage, reason, message)
            case Grace(storage, until, seconds):
                return await self._wait_for_start(context, storage, until, seconds)
            case Recheck(storage):
                return await self._recheck(context, storage)
            case Reject(reason, message):
                await context.sink.write(
                    rejected_status(
                        context.status,
                        spec=context.spec,
                        storage=storage_name,
                        reject=action,
                        generation=context.generation,
                        now=now,
                    )
                )
                context.post_event("Warning", reason, message)
                context.logger.error("Rejected: %s", message)
                return None
            case Run(storage, progress, starting, redrive, deadline, invalid_status):
                inline = InlineKeys(progress, untrusted=invalid_status)
                return await self._delete(context, inline, storage, deadline).run(
                    starting=starting, redrive=redrive
                )
            case DryRun(storage, redrive, deadline):
                if redrive:
                    restarted = restarted_for_redrive(context.status)
                    restarted = restarted.model_copy(update={"redrives": restarted.redrives + 1})
                    context = dataclasses.replace(context, status=restarted)
                if context.spec.prefix is not None:
                    return await prefix.dry_run(
                        context, self._storages[storage], self._gate(context, storage), self._jitter
                    )
                return await dry_run(
                    context,
                    self._storages[storage],
                    gate=self._gate(context, storage),
                    workers=self._workers(storage),
                    deadline=deadline,
                    jitter=self._jitter,
                )
            case RunManifest(storage, starting, redrive, deadline):
                return await self._run_manifest(
                    context, storage, deadline, starting=starting, redrive=redrive
                )

    async def _run_manifest(
        self,
        context: ObjectContext,
        storage: str,
        deadline: datetime.datetime | None,
        *,
        starting: bool,
        redrive: bool,
    ) -> float | None:
        """A manifest's deletion; or a prefix's, once its listing is kept as the manifest (run/prefix.py),
        which goes once the object Succeeded."""
        assert self._signer is not None  # noqa: S101  (plan runs no manifest without one)
        gate = self._gate(context, storage)
        if context.spec.prefix is not None:
            prepared = await prefix.prepare(
                context, self._storages[storage], gate, self._metrics, self._jitter
            )
            if not isinstance(prepared, ObjectContext):
                return prepared
            context = prepared
        listing, manifest = context.status.listing, context.spec.manifest
        key = listing.key if listing is not None else manifest.key if manifest is not None else ""
        source = ManifestKeys(
            context.spec,
            context.status,
            ReportPlace(key, context.namespace, context.name),
            self._storages[storage],
            gate=gate,
            signer=self._signer,
            manifest=key,
        )
        run = self._delete(context, source, storage, deadline)
        delay = await run.run(starting=starting, redrive=redrive)
        if context.spec.prefix is not None and run.latest.phase == Phase.SUCCEEDED:
            await prefix.remove_listing(context, self._storages[storage], gate)
        return delay

    def _delete(
        self,
        context: ObjectContext,
        source: KeySource[PartT],
        storage_name: str,
        deadline: datetime.datetime | None,
    ) -> ObjectRun[PartT]:
        return ObjectRun(
            context,
            source,
            storage_name,
            self._storages[storage_name],
            gate=self._gate(context, storage_name),
            metrics=self._metrics,
            workers=self._workers(storage_name),
            checkpoint_seconds=self._config.status_interval_seconds,
            deadline=deadline,
            api=self._api,
            jitter=self._jitter,
            shutdown_seconds=self._shutdown_seconds,
            paused=self._paused,
            recoverable_seconds=self._recoverable_seconds[storage_name],
            receipts=self._receipts,
            verify_after=self._verify_after(context, storage_name),
        )

    def _verify_after(self, context: ObjectContext, storage_name: str) -> list[int] | None:
        """The re-checks an object gets once it Succeeded: its storage's, for an object's own keys."""
        verify = self._config.storages[storage_name].verify
        listed_elsewhere = context.spec.manifest is not None or context.spec.prefix is not None
        return None if verify is None or listed_elsewhere else verify.after_seconds

    def _gate(self, context: ObjectContext, storage_name: str) -> KeyGate:
        protected = None if self._receipts is None else self._receipts.protected_prefix(storage_name)
        return KeyGate(self._config.storages[storage_name].policy, context.namespace, protected=protected)

    def _workers(self, storage_name: str) -> int:
        """Calls in flight per object: as configured, else as many as the storage takes, so that one
        object alone (the first of a burst, the last of a backlog) keeps the storage busy."""
        configured = self._config.chunks_in_flight_per_object
        return configured or self._config.storages[storage_name].max_concurrent_requests

    async def _recheck(self, context: ObjectContext, storage_name: str) -> float | None:
        """A Succeeded object's re-check: its keys are looked for with a dry run's checks, and any
        found again is counted, named in a Warning event and deleted again. The status says what was
        found and when the next is due, and the receipt is written again with it."""
        status, spec = context.status, context.spec
        verification = status.verification
        assert verification is not None  # noqa: S101  (plan asks for a re-check only with one)
        storage = self._storages.get(storage_name)
        keys = list(dict.fromkeys(spec.keys))
        number = f"re-check {verification.done + 1} of {len(verification.after_seconds)}"
        found: set[str] = set()
        still: dict[str, str] = {}
        known = 0
        try:
            if storage is not None:
                gate = self._gate(context, storage_name)
                for start in range(0, len(keys), spec.chunk_size):
                    result = await storage.exists(keys[start : start + spec.chunk_size], gate=gate)
                    found |= result.existing
                    known += len(result.existing) + len(result.missing) + len(result.forbidden)
                for start in range(0, len(found), spec.chunk_size):
                    again = await storage.delete(sorted(found)[start : start + spec.chunk_size], gate=gate)
                    still.update(again.failed)
        except StorageUnavailable as error:
            context.logger.warning("%s postponed: %s", number.capitalize(), error)
            return RECHECK_RETRY_SECONDS
        if storage is None or not known:
            message = (
                f"{number}: storage {storage_name!r} cannot tell which keys exist (an http storage needs "
                "dryRunUrl), so no re-check is possible"
            )
            last = True
        elif found:
            shown = ", ".join(sorted(found)[:EVENT_KEYS_SHOWN])
            message = (
                f"{number}: {len(found)} of {plural(len(keys), 'key')} {agreeing(len(found), 'was', 'were')} "
                f"found again (e.g. {shown}); "
                f"{len(found) - len(still)} deleted again, {len(still)} not"
            )
            last = verification.done + 1 >= len(verification.after_seconds)
        else:
            unchecked = f", {len(keys) - known} could not be checked" if known < len(keys) else ""
            message = f"{number}: none of the {plural(len(keys), 'key')} was found again{unchecked}"
            last = verification.done + 1 >= len(verification.after_seconds)
        done = verification.done + 1
        completion = status.completion_time or context.clock()
        next_time = (
            None if last else completion + datetime.timedelta(seconds=verification.after_seconds[done])
        )
        checked = verification.model_copy(
            update={
                "done": done,
                "next_time": next_time,
                "resurrected": verification.resurrected + len(found),
                "resurrected_keys": sorted(found)[:20] if found else verification.resurrected_keys,
                "last": message,
            }
        )
        updated = status.model_copy(
            update={"verification": checked, "observed_generation": context.generation}
        )
        if self._receipts is not None:
            try:
                place = await self._receipts.write(
                    context,
                    spec,
                    updated,
                    storage=storage_name,
                    recoverable_seconds=self._recoverable_seconds.get(storage_name),
                )
                updated = updated.model_copy(update={"receipt": place})
            except StorageUnavailable as error:
                context.logger.warning("Receipt not written again after the %s: %s", number, error)
        await context.sink.write(updated)
        if found:
            self._metrics.resurrected_keys.labels(storage_name).inc(len(found))
            context.post_event("Warning", EventReason.RESURRECTED, message)
            context.logger.warning("Resurrected: %s", message)
        else:
            context.post_event("Normal", EventReason.REVERIFIED, message)
            context.logger.info("Re-checked: %s", message)
        return None if next_time is None else max(0.0, (next_time - context.clock()).total_seconds())

    async def _wait_for_start(
        self, context: ObjectContext, storage: str, until: datetime.datetime, seconds: float
    ) -> float:
        """Pending until spec.startAfter, said once in status and in an event; then the run starts."""
        outcome = outcomes.grace_period(until, seconds)
        if not _shows(
            context.status, Phase.PENDING, outcome.reason, context.generation, ConditionType.PROGRESSING
        ):
            await context.sink.write(
                grace_status(
                    context.status,
                    storage=storage,
                    outcome=outcome,
                    generation=context.generation,
                    now=context.clock(),
                )
            )
            context.post_event("Normal", outcome.reason, outcome.message)
            context.logger.info("Waiting: %s", outcome.message)
        return seconds

    async def _suspend(
        self, context: ObjectContext, storage: str, reason: Reason, message: str
    ) -> float | None:
        """Suspended where it stands. A spec change resumes it (Kopf runs the handler again); a pause of
        the operator is checked again every PAUSE_RECHECK_SECONDS, the only cost of a paused object."""
        if not _shows(context.status, Phase.SUSPENDED, reason, context.generation, ConditionType.SUSPENDED):
            await context.sink.write(
                suspended_status(
                    context.status,
                    storage=storage,
                    reason=reason,
                    message=message,
                    generation=context.generation,
                    now=context.clock(),
                )
            )
            context.logger.info("Suspended: %s", message)
        return outcomes.suspended(reason, storage).delay


def _shows(
    status: FileCleanupStatus, phase: Phase, reason: Reason, generation: int | None, condition: ConditionType
) -> bool:
    """Whether the status already says ``phase`` and ``reason`` (in ``condition``) for this generation:
    a wait that is handled again writes nothing."""
    current = status.condition(condition)
    return (
        status.phase == phase
        and current is not None
        and current.reason == reason
        and status.observed_generation == generation
    )
