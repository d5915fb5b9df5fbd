"""Kopf wiring only: settings, clients in memo, and one handler for the FileCleanup kind."""

from __future__ import annotations

from typing import Any

import kopf

from filecleanup import kube
from filecleanup.engine import Engine, ObjectContext
from filecleanup.models import GROUP, PLURAL, VERSION, FileCleanupSpec, FileCleanupStatus
from filecleanup.runtime import Clients, Runtime
from filecleanup.storage import open_storages

UNEXPECTED_ERROR_BACKOFF_SECONDS = 15.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
    # Handler progress lives in status, not in annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    # Watching CRDs and namespaces at run time needs cluster-wide read access to both; discovery once
    # at startup needs none. Only namespace globs ('team-*') need the namespaces watched.
    settings.scanning.disabled = not memo.watches_namespace_globs
    # On SIGTERM, cancel the handlers at once: a round then starts no new call, lets the calls in flight
    # finish and checkpoints them (engine.run_round), well within the pod's termination grace period.
    settings.queueing.exit_timeout = 0
    # The diff-base must not copy spec.keys: a 10,000-key list would not fit in the 256 KiB that all
    # annotations of an object share. Keys are immutable (a CEL rule), so nothing is lost.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration", ignored_fields=["spec.keys"]
    )
    storages = open_storages(memo.config, memo.metrics)
    api = await kube.connect()
    engine = Engine(memo.config, storages, memo.metrics, shutdown_seconds=memo.shutdown_seconds)
    memo.opened = Clients(api, storages, engine)
    if not await kube.serves_filecleanups(api):
        # Fail and let the pod restart: serving nothing while looking healthy helps nobody.
        raise kopf.PermanentError(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}; install the CRD"
        )


@kopf.on.cleanup()
async def stop(memo: Runtime, **_: Any) -> None:
    if memo.opened is None:
        return
    for storage in memo.opened.storages.values():
        await storage.aclose()
    await memo.opened.api.close()  # type: ignore[no-untyped-call]


@kopf.on.event(GROUP, VERSION, PLURAL)
async def count_phases(event: kopf.RawEvent, uid: str, status: kopf.Status, memo: Runtime, **_: Any) -> None:
    if event["type"] == "DELETED":
        memo.metrics.objects.gone(uid)
    else:
        memo.metrics.objects.seen(uid, status.get("phase"))


@kopf.on.create(GROUP, VERSION, PLURAL, id="delete-keys", backoff=UNEXPECTED_ERROR_BACKOFF_SECONDS)
@kopf.on.update(
    GROUP, VERSION, PLURAL, id="redrive", field="spec.retryNonce", backoff=UNEXPECTED_ERROR_BACKOFF_SECONDS
)
async def delete_keys(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str | None,
    name: str,
    memo: Runtime,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    def post_event(event_type: str, reason: str, message: str) -> None:
        kopf.event(body, type=event_type, reason=reason, message=message)

    context = ObjectContext(
        spec=FileCleanupSpec.model_validate(dict(spec)),
        status=FileCleanupStatus.model_validate(dict(status)),
        namespace=namespace or "",
        generation=meta.get("generation"),
        sink=kube.ObjectStatusSink(memo.clients.api, namespace or "", name),
        post_event=post_event,
        logger=logger,
    )
    engine = memo.clients.engine
    try:
        delay = await engine.run(context)
    except Exception as error:
        if kube.is_api_outage(error):
            raise  # the API server's trouble, not the object's: Kopf retries after its back-off
        delay = await engine.internal_error(context, error)
    if delay is not None:
        raise kopf.TemporaryError(f"next run in {delay:.1f} s", delay=delay)
