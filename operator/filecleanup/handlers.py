"""Kopf wiring only: settings, clients in memo, and one handler for the FileCleanup kind."""

from __future__ import annotations

from typing import Any

import kopf

from filecleanup import kube
from filecleanup.config import OperatorConfig
from filecleanup.engine import Engine, ObjectContext
from filecleanup.metrics import Metrics
from filecleanup.models import GROUP, PLURAL, VERSION, FileCleanupSpec, FileCleanupStatus
from filecleanup.storage import open_storages

UNEXPECTED_ERROR_BACKOFF_SECONDS = 15.0


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Handler progress lives in status, not in annotations.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    # Watching CRDs and namespaces at run time needs cluster-wide read access to both; discovery once
    # at startup needs none. Only namespace globs ('team-*') need the namespaces watched.
    settings.scanning.disabled = not memo.watches_namespace_globs
    # On SIGTERM, cancel the handlers at once: a round then starts no new call, lets the calls in flight
    # finish and checkpoints them (engine.run_round), well within the pod's termination grace period.
    settings.queueing.exit_timeout = 0
    if memo.peering_lifetime is not None:
        settings.peering.mandatory = True  # a missing peering object is an error, not a silent solo run
        settings.peering.lifetime = memo.peering_lifetime
        settings.peering.clusterwide = memo.clusterwide
    # The diff-base must not copy spec.keys: a 10,000-key list would not fit in the 256 KiB that all
    # annotations of an object share. Keys are immutable (a CEL rule), so nothing is lost.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration", ignored_fields=["spec.keys"]
    )
    config: OperatorConfig = memo.config
    memo.metrics = Metrics()
    if memo.metrics_address:
        try:
            memo.metrics.serve(memo.metrics_address)
        except OSError as error:  # a port in use will not free itself: stop with the reason
            raise kopf.PermanentError(f"cannot serve metrics at {memo.metrics_address}: {error}") from error
    memo.storages = open_storages(config, memo.metrics)
    memo.api = await kube.connect()
    if not await kube.serves_filecleanups(memo.api):
        # Fail and let the pod restart: serving nothing while looking healthy helps nobody.
        raise kopf.PermanentError(
            f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}; install the CRD"
        )
    memo.engine = Engine(config, memo.storages, memo.metrics)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for storage in memo.storages.values():
        await storage.aclose()
    await memo.api.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def count_phases(
    event: kopf.RawEvent, uid: str, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> None:
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
    memo: kopf.Memo,
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
        sink=kube.ObjectStatusSink(memo.api, namespace or "", name),
        post_event=post_event,
        logger=logger,
    )
    delay = await memo.engine.run(context)
    if delay is not None:
        raise kopf.TemporaryError(f"next run in {delay:.1f} s", delay=delay)
