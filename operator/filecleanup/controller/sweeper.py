"""Layer controller. The finished objects of this installation, from a metadata-only list of the labelled
ones (retention.py): their count and size by phase for the metrics, and the deletion of those whose time
has come. Finished objects so cost the operator no memory and no requeue while they wait.

Labels only point the sweeper at objects; what it does follows their status and owner. It reads an
object whole before it deletes it, and deletes it only if its status is final (Succeeded or Failed),
its spec.managedBy names this installation and its retention, computed from its status, has passed;
the delete is conditional on the version it read. It also reads an object labelled finished whose
labels were not written for it (a YAML copied from a finished object), among them those labelled
Succeeded and so hidden from Kopf's watch. Labels of this installation's objects that claim what their
status does not say are set to the truth (a claimed phase removed: the object is watched and handled
again); another installation's object is left exactly as it is, and remembered at its version so that
it is not read again at every sweep.

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

from filecleanup.api import kube
from filecleanup.api.config import RetentionConfig
from filecleanup.api.indexes import IndexRangeError, parse_ranges
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    REPORTING_CONTROLLER,
    VERSION,
    EventReason,
    Phase,
)
from filecleanup.decide.retention import (
    BYTES_LABEL,
    CONTROLLER_LABEL,
    HANDLED_ANNOTATION,
    HIDDEN_SELECTOR,
    PHASE_LABEL,
    Verdict,
    controller_label,
    due,
    number,
    stored_bytes,
    suspect,
    verdict,
)

logger = logging.getLogger(__name__)
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
PAGE = 500
KEYS_PER_LOG_LINE = 1000
NOT_FOUND, CONFLICT = 404, 409
MAX_REPORTING_INSTANCE = 128
FINISHED = frozenset(phase.value for phase in Phase if phase.finished)


@dataclass
class Census:
    """Finished objects of this installation, by phase: how many, and the bytes they store."""

    objects: dict[str, int] = field(default_factory=dict)
    stored_bytes: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, stored: int) -> None:
        """One object; only the finished phases are counted (a label holds any value anyone sets)."""
        if phase not in FINISHED:
            return
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
        retention: RetentionConfig,
        *,
        identity: str,
    ) -> None:
        self._metrics = metrics
        self._objects = client.CustomObjectsApi(api)
        # events.k8s.io: the small client (CoreV1Api's module alone adds 25 MB to the operator).
        self._events = client.EventsV1Api(api)
        self._identity = identity
        self._controller = controller
        self._retention = retention
        label = controller_label(controller)
        self._selector = f"{CONTROLLER_LABEL}={label}"  # labelled as this installation's
        # Hidden from the watch and not labelled as this installation's: usually none of its own.
        self._hidden_selector = f"{HIDDEN_SELECTOR},{CONTROLLER_LABEL}!={label}"
        self._namespaces = list(namespaces)  # names or globs; empty: every namespace
        self._interval = retention.sweep_interval_seconds
        # uid -> (resourceVersion, whether it is this installation's) of objects read whose labels
        # needed nothing done: not read again until they change.
        self._checked: dict[str, tuple[str, bool]] = {}

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
        """Count the finished objects, delete the expired ones and correct labels that lie; how many
        went."""
        census, deleted, seen = Census(), 0, set[str]()
        async for item in self._finished(self._selector):
            deleted += await self._examine(item["metadata"], now, census, seen)
        async for item in self._finished(self._hidden_selector):
            deleted += await self._examine(item["metadata"], now, None, seen)
        self._checked = {uid: known for uid, known in self._checked.items() if uid in seen}
        self._metrics.objects.finished = {
            phase: (count, census.stored_bytes[phase]) for phase, count in census.objects.items()
        }
        return deleted

    async def _examine(
        self, metadata: dict[str, Any], now: datetime.datetime, census: Census | None, seen: set[str]
    ) -> int:
        """One listed object: counted on its labels if they can be believed, else read and settled on
        its status and owner. Whether it was deleted."""
        uid, labels = metadata["uid"], metadata.get("labels") or {}
        seen.add(uid)
        known = self._checked.get(uid)
        unchanged = known is not None and known[0] == metadata.get("resourceVersion")
        if unchanged and known is not None and not known[1]:
            return 0  # another installation's, read before: left alone
        if not suspect(metadata, now) or (unchanged and not due(labels, now)):
            if census is not None:
                census.add(labels.get(PHASE_LABEL, ""), number(labels, BYTES_LABEL) or 0)
            return 0
        obj = await self._read(metadata)
        if obj is None:
            return 0
        found = verdict(obj, controller=self._controller, retention=self._retention, now=now)
        return await self._settle(obj, found, census)

    async def _settle(self, obj: dict[str, Any], found: Verdict, census: Census | None) -> int:
        metadata = obj["metadata"]
        namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
        if not found.ours:
            self._checked[uid] = (metadata["resourceVersion"], False)
            logger.info(
                "%s/%s: its labels cannot be believed, but its spec.managedBy names another "
                "installation: left as it is", namespace, name,
            )  # fmt: skip
            return 0
        phase = found.phase.value if found.phase is not None else ""
        if found.expired:
            try:
                if await self._expire(obj, phase):
                    return 1
            except client.ApiException as error:
                if kube.is_api_outage(error):
                    raise
                # Refused for this object only (RBAC, a webhook, ...): the others still go.
                if census is not None:
                    census.add(phase, stored_bytes(obj.get("spec") or {}))
                logger.warning(
                    "Cannot delete expired %s/%s: %s", namespace, name, kube.describe_api_error(error)
                )
            return 0
        if found.relabel or found.forget_handled:
            await self._correct(obj, found)
        else:
            self._checked[uid] = (metadata["resourceVersion"], True)
        if census is not None:
            census.add(phase, stored_bytes(obj.get("spec") or {}))
        return 0

    async def _read(self, metadata: dict[str, Any]) -> dict[str, Any] | None:
        """The listed object whole, or None if it is gone (a new object of its name is listed itself)."""
        try:
            found = await self._objects.get_namespaced_custom_object(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"]
            )
        except client.ApiException as error:
            if error.status == NOT_FOUND:
                return None
            raise
        obj = cast("dict[str, Any]", found)
        return obj if obj["metadata"].get("uid") == metadata["uid"] else None

    async def _correct(self, obj: dict[str, Any], found: Verdict) -> None:
        """Labels set to what the object's status says, on the version read (a change since, by the
        reconciler say, wins: the object is looked at again at the next sweep)."""
        metadata = obj["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        patch: dict[str, Any] = {"resourceVersion": metadata["resourceVersion"], "labels": found.relabel}
        if found.forget_handled:
            # A copy's record of what Kopf handled for another object: without it, Kopf handles this
            # one as the new object it is.
            patch["annotations"] = {HANDLED_ANNOTATION: None}
        try:
            await self._objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": patch}, _content_type=kube.MERGE_PATCH
            )
        except client.ApiException as error:
            if error.status in {NOT_FOUND, CONFLICT}:
                return
            if kube.is_api_outage(error):
                raise
            logger.warning(
                "Cannot correct the labels of %s/%s: %s", namespace, name, kube.describe_api_error(error)
            )
            return
        if found.handed_back:
            logger.info("Changed after it finished: %s/%s is handled again", namespace, name)
        else:
            corrected = ", ".join(
                f"{key}={value or '(removed)'}" for key, value in sorted(found.relabel.items())
            )
            logger.warning(
                "Labels of %s/%s did not say what its status does; corrected: %s%s",
                namespace, name, corrected or "none",
                f", and {HANDLED_ANNOTATION} removed" if found.forget_handled else "",
            )  # fmt: skip

    async def _expire(self, obj: dict[str, Any], phase: str) -> bool:
        if phase == Phase.FAILED.value:
            await self._record(obj)
        if not await self._delete(obj["metadata"]):
            return False
        metadata = obj["metadata"]
        logger.info("Deleted %s/%s: its retention has passed", metadata["namespace"], metadata["name"])
        return True

    async def _finished(self, selector: str) -> Any:
        """The objects labelled so, a page at a time (an installation may have tens of thousands)."""
        exact = [name for name in self._namespaces if not set("*?[") & set(name)]
        listings = exact if self._namespaces and len(exact) == len(self._namespaces) else [None]
        for namespace in listings:
            token = None
            while True:
                page = await self._page(selector, namespace, token)
                for item in page.get("items") or []:  # an empty list may come as null
                    if namespace is not None or self._watched(item["metadata"]["namespace"]):
                        yield item
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break

    async def _page(self, selector: str, namespace: str | None, token: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {"label_selector": selector, "limit": PAGE, "_headers": METADATA_ONLY}
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

    async def _record(self, obj: dict[str, Any]) -> None:
        """Before a Failed object goes: a Warning event, and its failed keys in the log."""
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
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
                # On the version read: an object changed since (resumed, redriven) is not deleted.
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(
                        uid=metadata["uid"], resource_version=metadata["resourceVersion"]
                    )
                ),
                _request_timeout=kube.WRITE_TIMEOUT_SECONDS,
            )
        except client.ApiException as error:
            if error.status in {NOT_FOUND, CONFLICT}:  # gone already, replaced, or changed since read
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
