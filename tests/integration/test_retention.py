"""A bounded footprint in etcd: finished objects go after their retention (the object's own TTL
wins), a Failed one leaves an event and its failed keys in the log first, and the metrics count what
FileCleanups hold."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from filecleanup.models import API_VERSION, KIND
from polling import eventually
from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube, Manifest
from tests.support.processes import OperatorProcess
from tests.support.storages import StorageProcess


def gauges(url: str, name: str) -> dict[str, float]:
    families = text_string_to_metric_families(httpx.get(url, timeout=5).text)
    return {s.labels["phase"]: s.value for f in families for s in f.samples if s.name == name}


def test_finished_objects_go_after_their_retention_and_are_counted(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("retention")
    config = operator_config(storage)
    config["retention"] = {"succeededSeconds": 2, "failedSeconds": 3, "sweepIntervalSeconds": 1}
    operator = OperatorProcess(tmp_path, kubeconfig, config, [namespace])
    poison = f"{namespace}/failing/photo-00001.jpg"
    storage.fault(fail_keys={poison: -1})
    operator.start()
    try:
        create_cleanup(kube, namespace, "default-ttl", album_keys(f"{namespace}/a", 3))
        create_cleanup(
            kube, namespace, "own-ttl", album_keys(f"{namespace}/b", 3), ttlSecondsAfterFinished=3600
        )
        create_cleanup(kube, namespace, "failing", album_keys(f"{namespace}/failing", 3), maxRetries=0)
        wait_for_phase(kube, namespace, "own-ttl", "Succeeded")

        def remaining() -> set[str]:
            return {obj["metadata"]["name"] for obj in kube.list_objects(API_VERSION, KIND, namespace)}

        eventually("the expired objects to go", lambda: remaining() == {"own-ttl"}, timeout=30)
        kept = kube.get(API_VERSION, KIND, "own-ttl", namespace=namespace)
        objects = gauges(operator.metrics_url, "filecleanup_objects")
        stored = gauges(operator.metrics_url, "filecleanup_stored_bytes")
    finally:
        operator.stop()
    labels = kept["metadata"]["labels"]
    assert labels["filecleanup.dev/phase"] == "Succeeded"
    assert int(labels["filecleanup.dev/expires-at"]) > int(labels["filecleanup.dev/bytes"])  # a time, far off
    assert objects["Succeeded"] == 1 and objects["Failed"] == 0
    assert stored["Succeeded"] == len(json.dumps(kept["spec"], separators=(",", ":")))
    expired = [
        (kind, message) for kind, reason, message in kube.events(namespace, "failing") if reason == "Expired"
    ]
    assert expired == [
        (
            "Warning",
            "deleting this Failed object after its retention; its failed keys are in the operator's log (1)",
        )
    ]
    logged = [line for line in operator.log_text().splitlines() if "Failed keys of expired" in line]
    assert len(logged) == 1 and f'"key": "{poison}"' in logged[0] and "injected failure" in logged[0]


def manifest_names(found: list[Manifest]) -> list[str]:
    return sorted(obj["metadata"]["name"] for obj in found)


def test_an_object_the_api_server_will_not_delete_does_not_hold_up_the_others(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("stuck")
    policy = f"deny-delete-{namespace}"
    kube.create(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["filecleanup.dev"],
                            "apiVersions": ["*"],
                            "resources": ["filecleanups"],
                            "operations": ["DELETE"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": f"oldObject.metadata.namespace != '{namespace}' "
                        "|| oldObject.metadata.name != 'a-stuck'",
                        "message": "kept by policy",
                    }
                ],
            },
        }
    )
    kube.create(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {"policyName": policy, "validationActions": ["Deny"]},
        }
    )
    config = operator_config(storage)
    config["retention"] = {"succeededSeconds": 1, "sweepIntervalSeconds": 1}
    operator = OperatorProcess(tmp_path, kubeconfig, config, [namespace])
    operator.start()
    try:
        create_cleanup(kube, namespace, "a-stuck", album_keys(f"{namespace}/a", 2))
        wait_for_phase(kube, namespace, "a-stuck", "Succeeded")
        create_cleanup(kube, namespace, "b-free", album_keys(f"{namespace}/b", 2))

        def remaining() -> set[str]:
            return {obj["metadata"]["name"] for obj in kube.list_objects(API_VERSION, KIND, namespace)}

        eventually("the free object to go", lambda: remaining() == {"a-stuck"}, timeout=30)
    finally:
        operator.stop()
        kube.delete("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", policy)
        kube.delete("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", policy)
    refused = [
        line
        for line in operator.log_text().splitlines()
        if f"Cannot delete expired {namespace}/a-stuck" in line
    ]
    assert refused and "kept by policy" in refused[0]
