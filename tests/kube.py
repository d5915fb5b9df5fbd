"""A small, typed face of the kubernetes client for tests: custom objects as plain dicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.dynamic import DynamicClient

Manifest = dict[str, Any]


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.dynamic = DynamicClient(api_client)  # type: ignore[no-untyped-call]

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def create(self, manifest: Manifest, namespace: str | None = None) -> Manifest:
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        return cast("Manifest", resource.create(body=manifest, namespace=namespace).to_dict())

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Manifest:
        resource = self._resource(api_version, kind)
        return cast("Manifest", resource.get(name=name, namespace=namespace).to_dict())

    def list(
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

    def wait_for(
        self, what: str, probe: Callable[[], Manifest | None], timeout: float = 30.0, interval: float = 0.1
    ) -> Manifest:
        """Poll ``probe`` until it returns something; fail with ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

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

        self.wait_for(f"CRD {name} to be Established", established)
