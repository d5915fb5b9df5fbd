"""Creating FileCleanups and waiting for them, for integration tests and benchmarks."""

from __future__ import annotations

from typing import Any

from kubernetes.dynamic.exceptions import NotFoundError

from filecleanup.client import file_cleanup
from filecleanup.models import API_VERSION, KIND
from polling import eventually
from tests.kube import Kube, Manifest


def create_cleanup(kube: Kube, namespace: str, name: str, keys: list[str], **spec: Any) -> Manifest:
    """``keys`` empty: the spec names a manifest (``manifest={"key": ...}``), or nothing, to see it
    refused."""
    manifest = spec.pop("manifest", None)
    body = file_cleanup(name, keys=keys, manifest=None if manifest is None else manifest["key"], **spec)
    if not keys and manifest is None:
        del body["spec"]["keys"]
    return kube.create(body, namespace=namespace)


def get_cleanup(kube: Kube, namespace: str, name: str) -> Manifest:
    return kube.get(API_VERSION, KIND, name, namespace=namespace)


def wait_for_phase(kube: Kube, namespace: str, name: str, phase: str, timeout: float = 60.0) -> Manifest:
    def reached() -> Manifest | None:
        try:
            found = get_cleanup(kube, namespace, name)
        except NotFoundError:  # not created yet
            return None
        return found if found.get("status", {}).get("phase") == phase else None

    return eventually(f"{namespace}/{name} to reach phase {phase}", reached, timeout=timeout)


def album_keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/photo-{i:05d}.jpg" for i in range(count)]
