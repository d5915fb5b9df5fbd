"""A small, typed face of the kubernetes client for tests: custom objects as plain dicts."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any, cast

import urllib3
from kubernetes import client, watch
from kubernetes.dynamic import DynamicClient

from tools.envtest.polling import eventually

Manifest = dict[str, Any]


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.dynamic = DynamicClient(api_client)  # type: ignore[no-untyped-call]

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def create(self, manifest: Manifest, namespace: str | None = None, **params: Any) -> Manifest:
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        return cast("Manifest", resource.create(body=manifest, namespace=namespace, **params).to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest:
        resource = self._resource(api_version, kind)
        return cast("Manifest", resource.get(name=name, namespace=namespace).to_dict())

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None, **params: Any
    ) -> list[Manifest]:
        resource = self._resource(api_version, kind)
        return cast("list[Manifest]", resource.get(namespace=namespace, **params).to_dict()["items"])

    def patch(
        self, api_version: str, kind: str, name: str, body: Manifest, namespace: str | None = None
    ) -> Manifest:
        resource = self._resource(api_version, kind)
        patched = resource.patch(
            name=name, namespace=namespace, body=body, content_type="application/merge-patch+json"
        )
        return cast("Manifest", patched.to_dict())

    def patch_status(
        self, api_version: str, kind: str, name: str, body: Manifest, namespace: str | None = None
    ) -> Manifest:
        status = self._resource(api_version, kind).subresources["status"]
        patched = status.patch(
            name=name, namespace=namespace, body=body, content_type="application/merge-patch+json"
        )
        return cast("Manifest", patched.to_dict())

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        self._resource(api_version, kind).delete(name=name, namespace=namespace)

    def create_namespace(self, prefix: str) -> str:
        """A new namespace with a unique name. Nothing deletes it: without a controller-manager a
        deleted namespace never goes away anyway."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def events(self, namespace: str, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the events about object ``name``, oldest first (to the second)."""
        found = self.list_objects(
            "v1", "Event", namespace=namespace, field_selector=f"involvedObject.name={name}"
        )
        found.sort(key=lambda event: event["metadata"]["creationTimestamp"])
        return [(event["type"], event["reason"], event["message"]) for event in found]

    def watch_revisions(
        self, api_version: str, kind: str, namespace: str, name: str, since: str
    ) -> RevisionCounter:
        """Count the writes to one object after resourceVersion ``since``, in a background thread."""
        return RevisionCounter(self._resource(api_version, kind), namespace, name, since)

    def apply_crd(self, manifest: Manifest) -> None:
        """Create a CRD (or keep the one there) and wait until it is Established."""
        name = manifest["metadata"]["name"]
        try:
            self.create(manifest)
        except client.ApiException as error:
            if error.status != 409:
                raise

        def established() -> Manifest | None:
            crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions") or []}
            return crd if conditions.get("Established") == "True" else None

        crd = eventually(f"CRD {name} to be Established", established)

        # Established is not yet served: for a moment the API server answers 429 "storage is
        # (re)initializing", and an operator started then may miss the first objects.
        def served() -> Manifest | None:
            version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
            api_version = f"{crd['spec']['group']}/{version}"
            try:
                self.list_objects(api_version, crd["spec"]["names"]["kind"], limit=1)
            except client.ApiException as error:
                if error.status != 429:
                    raise
                return None
            return crd

        eventually(f"CRD {name} to be served", served)


class RevisionCounter:
    def __init__(self, resource: Any, namespace: str, name: str, since: str) -> None:
        self.writes = 0
        self.deleted: list[int] = []  # status.deleted as each write left it
        self._watcher = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(
            target=self._count, args=(resource, namespace, name, since), daemon=True
        )
        self._thread.start()

    def _count(self, resource: Any, namespace: str, name: str, since: str) -> None:
        events = resource.watch(
            namespace=namespace, name=name, resource_version=since, timeout=300, watcher=self._watcher
        )
        # The stream ends with an error when the control plane stops first; the count stands.
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            for event in events:
                if event["type"] == "MODIFIED":
                    self.writes += 1
                    status = event["raw_object"].get("status") or {}
                    if "deleted" in status:
                        self.deleted.append(status["deleted"])

    def stop(self, settle: float = 1.0) -> int:
        """The writes seen, after ``settle`` seconds for the last ones to arrive."""
        time.sleep(settle)
        self._watcher.stop()  # type: ignore[no-untyped-call]
        return self.writes
