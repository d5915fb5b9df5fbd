"""The finished objects of this installation, from a metadata-only list of the labelled ones
(retention.py): their count and size by phase for the metrics, and the deletion of those whose time has
come. Finished objects so cost the operator no memory and no requeue while they wait.

A Failed object about to be deleted first gets a Warning event, and its failed keys go to the log, a
line per thousand keys, so that a log pipeline keeps the record that the object was.
"""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes.aio import client

from filecleanup import kube
from filecleanup.indexes import IndexRangeError, parse_ranges
from filecleanup.metrics import Metrics
from filecleanup.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    REPORTING_CONTROLLER,
    VERSION,
    EventReason,
    Phase,
)
from filecleanup.retention import (
    BYTES_LABEL,
    CONTROLLER_LABEL,
    PHASE_LABEL,
    changed_since_finished,
    controller_label,
    due,
    number,
)

logger = logging.getLogger(__name__)
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
PAGE = 500
KEYS_PER_LOG_LINE = 1000
NOT_FOUND, CONFLICT = 404, 409
MAX_REPORTING_INSTANCE = 128


@dataclass
class Census:
    """Finished objects of this installation, by phase: how many, and the bytes they store."""

    objects: dict[str, int] = field(default_factory=dict)
    stored_bytes: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, stored: int) -> None:
        self.objects[phase] = self.objects.get(phase, 0) + 1
        self.stored_bytes[phase] = self.stored_bytes.get(phase, 0) + stored


class Sweeper:
    """Runs in the working replica only (the operator's startup handler starts it)."""

    def __init__(
        self,
        api: client.ApiClient,
        controller: str,
        namespaces: Sequence[str],
        metrics: Metrics,
        interval: float,
        *,
        identity: str,
    ) -> None:
        self._metrics = metrics
        self._objects = client.CustomObjectsApi(api)
        # events.k8s.io: the small client (CoreV1Api's module alone adds 25 MB to the operator).
        self._events = client.EventsV1Api(api)
        self._identity = identity
        self._selector = f"{CONTROLLER_LABEL}={controller_label(controller)}"
        self._namespaces = list(namespaces)  # names or globs; empty: every namespace
        self._interval = interval

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is tried again, never ends the loop."""
        while True:
            try:
                await self.sweep(datetime.datetime.now(datetime.UTC))
            except (client.ApiException, OSError, TimeoutError) as error:
                reason = (
                    kube.describe_api_error(error) if isinstance(error, client.ApiException) else repr(error)
                )
                logger.warning(
                    "Sweep of finished FileCleanups failed, next in %.0f s: %s", self._interval, reason
                )
            except Exception:
                logger.exception("Sweep of finished FileCleanups failed (internal error)")
            await asyncio.sleep(self._interval)

    async def sweep(self, now: datetime.datetime) -> int:
        """Count the finished objects and delete the expired ones; how many went."""
        census, deleted = Census(), 0
        async for item in self._finished():
            metadata = item["metadata"]
            labels = metadata.get("labels") or {}
            phase = labels.get(PHASE_LABEL, "")
            if phase == Phase.SUCCEEDED.value and changed_since_finished(metadata):
                await self._hand_back(metadata)
            if not due(labels, now):
                census.add(phase, number(labels, BYTES_LABEL) or 0)
                continue
            try:
                deleted += await self._expire(metadata, phase)
            except client.ApiException as error:
                if kube.is_api_outage(error):
                    raise
                # Refused for this object only (RBAC, a webhook, ...): the others still go.
                census.add(phase, number(labels, BYTES_LABEL) or 0)
                logger.warning(
                    "Cannot delete expired %s/%s: %s",
                    metadata["namespace"], metadata["name"], kube.describe_api_error(error),
                )  # fmt: skip
        self._metrics.objects.finished = {
            phase: (count, census.stored_bytes[phase]) for phase, count in census.objects.items()
        }
        return deleted

    async def _hand_back(self, metadata: dict[str, Any]) -> None:
        """A Succeeded object whose spec changed: without its phase label it is watched again, and the
        reconciler records the change (a new TTL, say) and labels it anew."""
        await self._objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            metadata["namespace"],
            PLURAL,
            metadata["name"],
            {"metadata": {"labels": {PHASE_LABEL: None}}},
            _content_type=kube.MERGE_PATCH,
        )
        logger.info(
            "Changed after it finished: %s/%s is handled again", metadata["namespace"], metadata["name"]
        )

    async def _expire(self, metadata: dict[str, Any], phase: str) -> bool:
        if phase == Phase.FAILED.value:
            await self._record(metadata)
        if not await self._delete(metadata):
            return False
        logger.info("Deleted %s/%s: its retention has passed", metadata["namespace"], metadata["name"])
        return True

    async def _finished(self) -> Any:
        """The labelled objects, a page at a time (an installation may have tens of thousands)."""
        exact = [name for name in self._namespaces if not set("*?[") & set(name)]
        listings = exact if self._namespaces and len(exact) == len(self._namespaces) else [None]
        for namespace in listings:
            token = None
            while True:
                page = await self._page(namespace, token)
                for item in page.get("items") or []:  # an empty list may come as null
                    if namespace is not None or self._watched(item["metadata"]["namespace"]):
                        yield item
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break

    async def _page(self, namespace: str | None, token: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {"label_selector": self._selector, "limit": PAGE, "_headers": METADATA_ONLY}
        if token:
            options["_continue"] = token
        if namespace is None:
            listed = await self._objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, **options)
        else:
            listed = await self._objects.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, **options
            )
        return cast("dict[str, Any]", listed)

    def _watched(self, namespace: str) -> bool:
        return not self._namespaces or any(
            fnmatch.fnmatchcase(namespace, pattern) for pattern in self._namespaces
        )

    async def _record(self, metadata: dict[str, Any]) -> None:
        """Before a Failed object goes: a Warning event, and its failed keys in the log."""
        namespace, name = metadata["namespace"], metadata["name"]
        try:
            found = await self._objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.ApiException as error:
            if error.status == NOT_FOUND:
                return
            raise
        obj = cast("dict[str, Any]", found)
        failed = failed_keys(obj)
        report = ((obj.get("status") or {}).get("manifest") or {}).get("report")
        if report:  # a manifest's failed keys stay in its report, in the storage: the log gets a sample
            where = f"in the report {report}* next to its manifest ({len(failed)} in the operator's log)"
        else:
            where = f"in the operator's log ({len(failed)})"
        for start in range(0, len(failed), KEYS_PER_LOG_LINE):
            part = failed[start : start + KEYS_PER_LOG_LINE]
            logger.warning(
                "Failed keys of expired %s/%s (%d-%d of %d): %s",
                namespace, name, start + 1, start + len(part), len(failed), json.dumps(part),
            )  # fmt: skip
        message = f"deleting this Failed object after its retention; its failed keys are {where}"
        try:
            await self._event(obj, EventReason.EXPIRED, message)
        except client.ApiException as error:
            if kube.is_api_outage(error):
                raise
            # The log has the record: an event the server refuses must not keep the object for ever.
            logger.warning(
                "Cannot post the Expired event of %s/%s: %s", namespace, name, kube.describe_api_error(error)
            )

    async def _event(self, obj: dict[str, Any], reason: EventReason, message: str) -> None:
        metadata = obj["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = client.EventsV1Event(
            # Named as client-go names events; events.k8s.io refuses a generateName ending in '.'.
            metadata=client.V1ObjectMeta(
                name=f"{metadata['name']}.{time.time_ns():x}", namespace=metadata["namespace"]
            ),
            regarding=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=KIND,
                name=metadata["name"],
                namespace=metadata["namespace"],
                uid=metadata["uid"],
            ),
            reason=reason,
            action="Delete",
            note=message,
            type="Warning",
            event_time=now,
            reporting_controller=REPORTING_CONTROLLER,
            reporting_instance=self._identity[:MAX_REPORTING_INSTANCE],
        )
        await self._events.create_namespaced_event(metadata["namespace"], event)

    async def _delete(self, metadata: dict[str, Any]) -> bool:
        try:
            await self._objects.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                metadata["namespace"],
                PLURAL,
                metadata["name"],
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=metadata["uid"])),
                _request_timeout=kube.WRITE_TIMEOUT_SECONDS,
            )
        except client.ApiException as error:
            if error.status in {NOT_FOUND, CONFLICT}:  # gone already, or replaced by a new object
                return False
            raise
        return True


def failed_keys(obj: dict[str, Any]) -> list[dict[str, str]]:
    """Every failed key of a Failed object, with its latest error where status lists one."""
    keys: list[str] = (obj.get("spec") or {}).get("keys") or []
    status = obj.get("status") or {}
    errors = {item.get("key"): item.get("error", "") for item in status.get("failedKeys") or []}
    try:
        indexes = parse_ranges(status.get("failedIndexes", ""), len(keys))
    except IndexRangeError:
        indexes = []
    listed = [keys[i] for i in indexes] or list(errors)
    return [{"key": key, "error": errors.get(key) or "failed in an earlier round"} for key in listed]
