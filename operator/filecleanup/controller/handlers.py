"""Layer controller. Kopf wiring only: settings, clients in memo, and one handler for the FileCleanup kind."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from filecleanup.api import kube
from filecleanup.api.models import (
    ALBUM_LABEL,
    GROUP,
    PLURAL,
    REPORTING_CONTROLLER,
    VERSION,
    FileCleanupSpec,
    FileCleanupStatus,
)
from filecleanup.api.redaction import redact
from filecleanup.controller.runtime import Clients, Runtime
from filecleanup.controller.sweeper import Sweeper
from filecleanup.decide import erasure, retention
from filecleanup.run.context import InvalidObject, ObjectContext
from filecleanup.run.reconciler import Reconciler
from filecleanup.storage.opening import open_storages

UNEXPECTED_ERROR_BACKOFF_SECONDS = 15.0
API_OUTAGE_RETRY_SECONDS = 10.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
    # Handler progress lives in status, not in annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    # Events say who posted them: `kubectl describe` shows From: filecleanup-operator, <this replica>.
    settings.posting.reporting_component = REPORTING_CONTROLLER
    settings.posting.reporting_instance = memo.identity
    # Watching CRDs and namespaces at run time needs cluster-wide read access to both; discovery once
    # at startup needs none. Only namespace globs ('team-*') need the namespaces watched.
    settings.scanning.disabled = not memo.watches_namespace_globs
    # On SIGTERM, cancel the handlers at once: a round then starts no new call, lets the calls in flight
    # finish and checkpoints them (rounds.send_chunks), well within the pod's termination grace period.
    settings.queueing.exit_timeout = 0
    # Succeeded objects stay out of the watch: they cost no memory and no startup work. A label can lie
    # (a copied YAML): the sweeper reads an object so hidden whose labels were not written for it, and
    # brings it back if its status is not Succeeded (retention.py).
    settings.watching.label_selectors[GROUP, PLURAL] = retention.WATCHED_SELECTOR
    # The diff-base must not copy spec.keys: a 10,000-key list would not fit in the 256 KiB that all
    # annotations of an object share. Keys are immutable (a CEL rule), so nothing is lost. Nor the
    # metadata: the handler reacts to spec changes only, and the retention labels it sets in Kopf's
    # closing patch would otherwise make Kopf write the diff-base a second time, a whole-object write.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key=retention.HANDLED_KEY, ignored_fields=["spec.keys", "metadata"]
    )
    storages = open_storages(memo.config, memo.metrics)
    api = await kube.connect()
    reconciler = Reconciler(
        memo.config,
        storages,
        memo.metrics,
        shutdown_seconds=memo.shutdown_seconds,
        controller=memo.controller_name,
        paused=lambda: memo.pause.paused,
    )
    sweeper = Sweeper(
        api,
        memo.controller_name,
        memo.namespaces,
        memo.metrics,
        memo.config.retention,
        identity=memo.identity,
    )
    sweeping = asyncio.create_task(sweeper.run(), name="sweeper")
    memo.pause.read()  # before the first object runs
    pause_reader = asyncio.create_task(memo.pause.run(memo.pause_poll_seconds), name="pause-file")
    memo.opened = Clients(api, storages, reconciler, sweeping, pause_reader)
    if not await kube.serves_filecleanups(api):
        # Fail and let the pod restart: serving nothing while looking healthy helps nobody.
        raise kopf.PermanentError(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}; install the CRD"
        )


@kopf.on.cleanup()
async def stop(memo: Runtime, **_: Any) -> None:
    if memo.opened is None:
        return
    for task in (memo.opened.sweeper, memo.opened.pause_reader):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # each logs its own errors and never ends otherwise
    for storage in memo.opened.storages.values():
        await storage.aclose()
    await memo.opened.api.close()  # type: ignore[no-untyped-call]


def manages(spec: kopf.Spec, memo: Runtime, **_: Any) -> bool:
    """Whether this installation handles the object: its spec.managedBy names this controller (unset:
    the default one), as a Job's spec.managedBy does. Other installations' objects are left alone."""
    return retention.owner(spec) == memo.controller_name


@kopf.on.event(GROUP, VERSION, PLURAL, when=manages)
async def count_phases(
    *,
    event: kopf.RawEvent,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: Runtime,
    **_: Any,
) -> None:
    objects = memo.metrics.objects
    if event["type"] == "DELETED":
        objects.gone(uid)
        return
    known = objects.stored_bytes_of(uid)  # keys are immutable: measured once per object
    stored = known if known is not None else retention.stored_bytes(spec)
    objects.seen(uid, status.get("phase"), stored, erasure_started(meta).timestamp())


def erasure_started(meta: kopf.Meta) -> datetime.datetime:
    """When the object's album was deleted (decide/erasure.py); its creation if nothing better."""
    created = meta.creation_timestamp
    creation = datetime.datetime.fromisoformat(created) if created else datetime.datetime.now(datetime.UTC)
    return erasure.erasure_started(meta.annotations, creation)


# One handler for the kind: a new object, and any change of its spec (a redrive through retryNonce,
# a new TTL or deadline); the reconciler decides what each means.
@kopf.on.create(
    GROUP, VERSION, PLURAL, id="delete-keys", backoff=UNEXPECTED_ERROR_BACKOFF_SECONDS, when=manages
)
@kopf.on.update(
    GROUP,
    VERSION,
    PLURAL,
    id="spec-changed",
    field="spec",
    backoff=UNEXPECTED_ERROR_BACKOFF_SECONDS,
    when=manages,
)
async def delete_keys(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    labels: kopf.Labels,
    patch: kopf.Patch,
    namespace: str | None,
    name: str,
    uid: str | None,
    memo: Runtime,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    def post_event(event_type: str, reason: str, message: str) -> None:
        kopf.event(body, type=event_type, reason=reason, message=redact(message))

    reconciler = memo.clients.reconciler
    sink = kube.ObjectStatusSink(
        memo.clients.api,
        namespace or "",
        name,
        resource_version=meta.get("resourceVersion"),
        status=dict(status),
    )
    generation = meta.get("generation")
    try:
        status_model, status_problem = FileCleanupStatus.model_validate(dict(status)), None
    except ValidationError as error:
        status_model, status_problem = FileCleanupStatus(), validation_problem(error)
    try:
        spec_model = FileCleanupSpec.model_validate(dict(spec))
    except ValidationError as error:
        problem = f"spec is not valid: {validation_problem(error)}; nothing was deleted"
        await reconciler.invalid_spec(
            InvalidObject(status_model, problem, generation, sink, post_event, logger)
        )
        return
    context = ObjectContext(
        spec=spec_model,
        status=status_model,
        namespace=namespace or "",
        name=name,
        generation=generation,
        sink=sink,
        post_event=post_event,
        logger=logger,
        status_problem=status_problem,
        stored_bytes=retention.stored_bytes(spec),
        erasure_started=erasure_started(meta),
        uid=uid or "",
        album=labels.get(ALBUM_LABEL),
    )
    try:
        after = await reconciler.run(context)
    except Exception as error:
        if kube.is_api_outage(error):
            # The API server's trouble, not the object's: a requeue, said once at WARNING (kopf_logs)
            # and with no traceback. A deletion under way waits for the API itself (run/api_reach.py);
            # this is a write outside one (a suspension, a rejection), which loses no progress.
            raise kopf.TemporaryError(
                f"the Kubernetes API server is unreachable ({error})", delay=API_OUTAGE_RETRY_SECONDS
            ) from error
        after = await reconciler.internal_error(context, error)
    # Kopf sends these with its own metadata patch at the end of the handling: no extra write. They name
    # the object's uid: labels copied onto another object are known as such.
    for key, value in retention.changed(labels, retention.sealed(after.labels, uid or "")).items():
        patch.metadata.labels[key] = value
    if after.requeue_after is not None:
        raise kopf.TemporaryError(f"next run in {after.requeue_after:.1f} s", delay=after.requeue_after)


def validation_problem(error: ValidationError, shown: int = 3) -> str:
    """Where and why a document failed its model, without quoting its values."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    ]
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more
