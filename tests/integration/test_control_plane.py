"""The local control plane is a real API server: CRDs, the status subresource, validation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.kube import Kube

GROUP = "envtest.filecleanup.dev"
API_VERSION = f"{GROUP}/v1"
CRD_NAME = f"widgets.{GROUP}"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                                "x-kubernetes-validations": [
                                    {"rule": "self.size <= 10", "message": "size must be at most 10"}
                                ],
                            },
                            "status": {"type": "object", "properties": {"seen": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widgets(kube: Kube) -> Iterator[Kube]:
    kube.apply_crd(WIDGET_CRD)
    yield kube
    kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME)


def widget(name: str, size: int) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}}


def test_custom_resource_status_goes_through_the_status_subresource(widgets: Kube) -> None:
    name = f"w-{uuid.uuid4().hex[:8]}"
    widgets.create(widget(name, 3), namespace="default")

    widgets.patch_status(API_VERSION, "Widget", name, {"status": {"seen": 3}}, namespace="default")
    # With the status subresource, the main endpoint ignores status changes.
    widgets.patch(API_VERSION, "Widget", name, {"status": {"seen": 99}}, namespace="default")

    stored = widgets.get(API_VERSION, "Widget", name, namespace="default")
    assert stored["spec"] == {"size": 3}
    assert stored["status"] == {"seen": 3}


@pytest.mark.parametrize(
    ("size", "message"),
    [(0, "should be greater than or equal to 1"), (11, "size must be at most 10")],
)
def test_schema_and_cel_rules_are_enforced(widgets: Kube, size: int, message: str) -> None:
    with pytest.raises(ApiException) as rejected:
        widgets.create(widget("bad", size), namespace="default")
    assert rejected.value.status == 422
    assert message in str(rejected.value.body)
