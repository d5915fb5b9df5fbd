"""The API server rejects invalid FileCleanups with a message that names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import create_cleanup
from tests.kube import Kube


def rejection_message(error: ApiException) -> str:
    message: str = json.loads(error.body or "{}")["message"]
    return message


@pytest.fixture(scope="module")
def validation_namespace(crd: None, kube: Kube) -> str:
    return kube.create_namespace("validation")


@pytest.mark.parametrize(
    ("keys", "spec", "message"),
    [
        ([], {}, "spec.keys: Invalid value: 0: spec.keys in body should have at least 1 items"),
        ([f"k/{i}" for i in range(10_001)], {}, "spec.keys: Too many: 10001: must have at most 10000 items"),
        (["a" * 1025], {}, "spec.keys[0]: Too long: may not be more than 1024"),
        ([""], {}, 'spec.keys[0]: Invalid value: "": spec.keys[0] in body should be at least 1 chars long'),
        # The key rules are one pattern: the message names the key and its index.
        (
            ["ok", "/etc/passwd"],
            {},
            'spec.keys[1]: Invalid value: "/etc/passwd": spec.keys[1] in body should match',
        ),
        (["a/../b"], {}, 'spec.keys[0]: Invalid value: "a/../b": spec.keys[0] in body should match'),
        (["ok", "../b"], {}, 'spec.keys[1]: Invalid value: "../b"'),
        (["b/.."], {}, 'spec.keys[0]: Invalid value: "b/.."'),
        (["a//b"], {}, 'spec.keys[0]: Invalid value: "a//b"'),
        (["a/./b"], {}, 'spec.keys[0]: Invalid value: "a/./b"'),
        (["a\nb"], {}, "spec.keys[0]: Invalid value"),
        (["a"], {"chunkSize": 0}, "spec.chunkSize: Invalid value: 0"),
        (["a"], {"chunkSize": 1001}, "spec.chunkSize: Invalid value: 1001"),
        (["a"], {"maxRetries": -1}, "spec.maxRetries: Invalid value: -1"),
        (["a"], {"maxRetries": 101}, "spec.maxRetries: Invalid value: 101"),
        (["a"], {"backoff": {"initialSeconds": 0}}, "spec.backoff.initialSeconds: Invalid value: 0"),
        (
            ["a"],
            {"backoff": {"initialSeconds": 60, "maxSeconds": 10}},
            "initialSeconds must not exceed maxSeconds",
        ),
        (["a"], {"storage": "Photos!"}, 'spec.storage: Invalid value: "Photos!"'),
        (["a"], {"ttlSecondsAfterFinished": -5}, "spec.ttlSecondsAfterFinished: Invalid value: -5"),
        (["a"], {"colour": "red"}, 'unknown field "spec.colour"'),
    ],
    ids=lambda value: str(value)[:30],
)
def test_invalid_objects_are_rejected(
    kube: Kube, validation_namespace: str, keys: list[str], spec: dict[str, Any], message: str
) -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "bad"},
        "spec": {"keys": keys, **spec},
    }
    with pytest.raises(ApiException) as rejected:
        # kubectl's default: unknown fields are errors, not silently dropped.
        kube.create(manifest, namespace=validation_namespace, query_params=[("fieldValidation", "Strict")])
    assert rejected.value.status in {400, 422}  # strict field validation answers 400
    assert message in rejection_message(rejected.value)


def test_keys_are_immutable(kube: Kube, validation_namespace: str) -> None:
    create_cleanup(kube, validation_namespace, "fixed", ["a", "b"])
    with pytest.raises(ApiException) as rejected:
        kube.patch(API_VERSION, KIND, "fixed", {"spec": {"keys": ["a", "c"]}}, namespace=validation_namespace)
    assert rejected.value.status == 422
    assert "keys are immutable" in rejection_message(rejected.value)


def test_defaults_are_applied_by_the_api_server(kube: Kube, validation_namespace: str) -> None:
    created = create_cleanup(kube, validation_namespace, "defaults", ["a"])
    assert created["spec"] == {
        "keys": ["a"],
        "chunkSize": 100,
        "maxRetries": 5,
        "backoff": {"initialSeconds": 5, "maxSeconds": 300},
        "suspend": False,
        "dryRun": False,
    }
