"""A bounded footprint in etcd: finished objects go after their retention (the object's own TTL
wins), a Failed one leaves an event and its failed keys in the log first, and the metrics count what
FileCleanups hold. The lifecycle follows an object's status and owner, whatever its labels claim."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import httpx
from kubernetes.dynamic.exceptions import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from filecleanup.api.models import API_VERSION, DEFAULT_CONTROLLER, KIND
from filecleanup.decide.retention import CONTROLLER_LABEL, EXPIRES_LABEL, PHASE_LABEL, controller_label
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube, Manifest
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess
from tools.envtest.polling import eventually


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


def expires_at(obj: Manifest, seconds: int) -> str:
    """The expiry an object's status gives: its completion time plus ``seconds``."""
    completed = datetime.datetime.fromisoformat(obj["status"]["completionTime"])
    return str(int(completed.timestamp()) + seconds)


def labelled(kube: Kube, namespace: str, name: str) -> Manifest:
    """The object, once the operator's closing patch has labelled it finished."""

    def found() -> Manifest | None:
        obj = get_cleanup(kube, namespace, name)
        return obj if EXPIRES_LABEL in (obj["metadata"].get("labels") or {}) else None

    return eventually(f"{namespace}/{name} to be labelled finished", found, timeout=30)


def test_an_object_created_with_the_labels_of_a_finished_one_is_handled(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    """A tenant creates objects whose labels claim they Succeeded: one from the YAML of a finished object
    (its labels and annotations copied), one written with the phase label alone. Neither is hidden from
    the operator: both are handled, their files go, and their labels end up saying what their status
    does."""
    namespace = kube.create_namespace("copied")
    config = operator_config(storage)
    config["retention"] = {"succeededSeconds": 3600, "sweepIntervalSeconds": 1}
    operator = OperatorProcess(tmp_path, kubeconfig, config, [namespace])
    operator.start()
    copied, bare = album_keys(f"{namespace}/copied", 3), album_keys(f"{namespace}/bare", 3)
    try:
        create_cleanup(kube, namespace, "original", album_keys(f"{namespace}/original", 2))
        wait_for_phase(kube, namespace, "original", "Succeeded")
        original = labelled(kube, namespace, "original")["metadata"]
        storage.seed(copied + bare)
        kube.create(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {
                    "name": "copied",
                    "labels": original["labels"],
                    "annotations": original["annotations"],  # Kopf's record of what it handled, too
                },
                "spec": {"keys": copied},
            },
            namespace=namespace,
        )
        kube.create(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": "bare", "labels": {PHASE_LABEL: "Succeeded"}},
                "spec": {"keys": bare},
            },
            namespace=namespace,
        )
        for name in ("copied", "bare"):
            wait_for_phase(kube, namespace, name, "Succeeded", timeout=30)
        done = {name: labelled(kube, namespace, name) for name in ("copied", "bare")}
    finally:
        operator.stop()
    assert [key for key in copied + bare if storage.exists(key)] == []
    for obj in done.values():
        labels = obj["metadata"]["labels"]
        assert labels[PHASE_LABEL] == "Succeeded"
        assert labels[EXPIRES_LABEL] == expires_at(obj, 3600)  # its own completion, not the original's
        assert obj["status"]["deleted"] == 3


def wait_gone(kube: Kube, namespace: str, name: str) -> None:
    def gone() -> bool:
        try:
            get_cleanup(kube, namespace, name)
        except NotFoundError:
            return True
        return False

    eventually(f"{namespace}/{name} to be deleted", gone, timeout=30)


def test_the_sweeper_deletes_only_finished_objects_of_its_own_whatever_their_labels(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    """Labels a tenant sets by hand delete nothing: not a Suspended object labelled Failed and expired,
    not a Failed object of another installation labelled as this one's, not a Failed object of this one
    labelled as expired a week early. Two objects that do expire, created one after the other once the
    labels are set, prove that a whole sweep has seen the labels."""
    namespace = kube.create_namespace("lying")
    config = operator_config(storage)
    config["retention"] = {"failedSeconds": 3600, "sweepIntervalSeconds": 1}
    operator = OperatorProcess(tmp_path, kubeconfig, config, [namespace])
    poison = f"{namespace}/dead-letter/photo-00000.jpg"
    storage.fault(fail_keys={poison: -1})
    ours = controller_label(DEFAULT_CONTROLLER)
    lies = {PHASE_LABEL: "Failed", EXPIRES_LABEL: "1", CONTROLLER_LABEL: ours}
    operator.start()
    try:
        create_cleanup(kube, namespace, "held", album_keys(f"{namespace}/held", 2), suspend=True)
        create_cleanup(kube, namespace, "dead-letter", [poison], maxRetries=0)
        create_cleanup(
            kube, namespace, "elsewhere", album_keys(f"{namespace}/other", 2), managedBy="example.com/other"
        )
        wait_for_phase(kube, namespace, "held", "Suspended")
        dead_letter = labelled(kube, namespace, "dead-letter")
        assert dead_letter["status"]["phase"] == "Failed"
        # The other installation's own status for its object: Failed, long ago.
        kube.patch_status(
            API_VERSION,
            KIND,
            "elsewhere",
            {"status": {"phase": "Failed", "completionTime": "2020-01-01T00:00:00Z"}},
            namespace=namespace,
        )
        for name in ("held", "dead-letter", "elsewhere"):  # the tenant's hand edits
            kube.patch(API_VERSION, KIND, name, {"metadata": {"labels": lies}}, namespace=namespace)
        for canary in ("canary-1", "canary-2"):
            create_cleanup(
                kube, namespace, canary, album_keys(f"{namespace}/{canary}", 1), ttlSecondsAfterFinished=0
            )
            wait_gone(kube, namespace, canary)
        held = get_cleanup(kube, namespace, "held")
        kept = get_cleanup(kube, namespace, "dead-letter")
        elsewhere = get_cleanup(kube, namespace, "elsewhere")
    finally:
        operator.stop()
    assert held["status"]["phase"] == "Suspended"
    assert {PHASE_LABEL, EXPIRES_LABEL} & set(held["metadata"]["labels"]) == set()  # corrected
    assert kept["metadata"]["labels"][EXPIRES_LABEL] == expires_at(kept, 3600)  # set to the truth
    assert elsewhere["metadata"]["labels"] == lies  # another installation's object: left as it is
    for name in ("held", "dead-letter", "elsewhere"):
        assert [reason for _, reason, _ in kube.events(namespace, name) if reason == "Expired"] == []
