"""Deletes the finished objects whose time has come (retention.py), from a metadata-only list of the
labelled ones: finished objects cost the operator no memory and no requeue while they wait."""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
import logging
from collections.abc import Sequence
from typing import Any, cast

from kubernetes.aio import client

from filecleanup import kube
from filecleanup.models import GROUP, PLURAL, VERSION
from filecleanup.retention import CONTROLLER_LABEL, EXPIRES_LABEL, controller_label, due

logger = logging.getLogger(__name__)
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
SWEEP_INTERVAL_SECONDS = 10.0
NOT_FOUND, CONFLICT = 404, 409


class Sweeper:
    """Runs in the working replica only (it is started by the operator's startup handler)."""

    def __init__(
        self,
        api: client.ApiClient,
        controller: str,
        namespaces: Sequence[str],
        interval: float = SWEEP_INTERVAL_SECONDS,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._selector = f"{CONTROLLER_LABEL}={controller_label(controller)},{EXPIRES_LABEL}"
        self._namespaces = list(namespaces)  # names or globs; empty: every namespace
        self._interval = interval

    async def run(self) -> None:
        while True:
            try:
                await self.sweep(datetime.datetime.now(datetime.UTC))
            except (client.ApiException, OSError, TimeoutError) as error:
                logger.warning(
                    "Sweep of expired FileCleanups failed, next in %.0f s: %s", self._interval, error
                )
            await asyncio.sleep(self._interval)

    async def sweep(self, now: datetime.datetime) -> int:
        """Delete the expired objects; how many went."""
        deleted = 0
        for item in await self._labelled():
            metadata = item["metadata"]
            if not due(metadata.get("labels") or {}, now):
                continue
            if await self._delete(metadata):
                deleted += 1
                logger.info(
                    "Deleted %s/%s: its ttlSecondsAfterFinished has passed",
                    metadata["namespace"],
                    metadata["name"],
                )
        return deleted

    async def _labelled(self) -> list[dict[str, Any]]:
        exact = [name for name in self._namespaces if not set("*?[") & set(name)]
        if self._namespaces and len(exact) == len(self._namespaces):  # a Role per namespace: list each
            found: list[dict[str, Any]] = []
            for namespace in exact:
                listed = await self._objects.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, label_selector=self._selector, _headers=METADATA_ONLY
                )
                found += cast("dict[str, Any]", listed).get("items") or []  # an empty list may be null
            return found
        listed = await self._objects.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=self._selector, _headers=METADATA_ONLY
        )
        items = cast("dict[str, Any]", listed).get("items") or []
        return [
            item
            for item in items
            if not self._namespaces
            or any(
                fnmatch.fnmatchcase(item["metadata"]["namespace"], pattern) for pattern in self._namespaces
            )
        ]

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
