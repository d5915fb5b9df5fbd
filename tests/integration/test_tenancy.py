"""Tenants and installations on a shared cluster (issue 13): one controller per object, a policy that
means what it says whatever CRD is installed, spec fields that cannot move under a run, and a status
that is checked before it is trusted."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from filecleanup.album.client import file_cleanup
from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.conftest import CRD_FILE
from tests.integration.conftest import operator_config
from tests.integration.test_validation import rejection_message
from tests.kube import Kube, Manifest
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess
from tools.envtest.controlplane import ControlPlane, obtain_binaries
from tools.envtest.polling import eventually

OTHER = "example.com/team-b"


def test_two_installations_each_handle_only_their_own_objects(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("installs")
    config = operator_config(storage)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    default = OperatorProcess(tmp_path / "a", kubeconfig, config, [namespace])
    team_b = OperatorProcess(tmp_path / "b", kubeconfig, config, [namespace])
    default.start()
    team_b.start("--controller-name", OTHER)
    try:
        create_cleanup(kube, namespace, "default", album_keys(f"{namespace}/a", 5))
        create_cleanup(kube, namespace, "team-b", album_keys(f"{namespace}/b", 5), managedBy=OTHER)
        create_cleanup(
            kube, namespace, "nobody", album_keys(f"{namespace}/c", 5), managedBy="example.com/gone"
        )
        wait_for_phase(kube, namespace, "default", "Succeeded")
        wait_for_phase(kube, namespace, "team-b", "Succeeded")
        nobody = get_cleanup(kube, namespace, "nobody")
    finally:
        default.stop()
        team_b.stop()
    assert [reason for _, reason, _ in kube.events(namespace, "default")] == ["Completed"]
    assert [reason for _, reason, _ in kube.events(namespace, "team-b")] == ["Completed"]
    # An object no installation manages is left exactly as it was: no status, no annotation, no event.
    assert "status" not in nobody
    assert not (nobody["metadata"].get("annotations") or {})
    assert kube.events(namespace, "nobody") == []
    assert len(storage.stats()["requested"]) == 10  # the unmanaged object's keys were never sent
    assert "team-b" not in default.log_text()
    assert "/default" not in team_b.log_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"storage": "videos"}, "storage is immutable"),
        ({"managedBy": OTHER}, "managedBy is immutable"),
        ({"maxFailedKeys": 3}, "maxFailedKeys is immutable"),
        ({"manifest": {"key": "albums/1.keys"}}, "manifest is immutable"),
        ({"chunkSize": 7}, "chunkSize, maxRetries and backoff are immutable"),
        ({"maxRetries": 9}, "chunkSize, maxRetries and backoff are immutable"),
        (
            {"backoff": {"initialSeconds": 1, "maxSeconds": 2}},
            "chunkSize, maxRetries and backoff are immutable",
        ),
    ],
)
def test_what_a_run_depends_on_cannot_change(
    crd: None, kube: Kube, change: dict[str, Any], message: str
) -> None:
    namespace = kube.create_namespace("immutable")
    create_cleanup(kube, namespace, "fixed", ["a"], storage="photos")
    with pytest.raises(ApiException) as rejected:
        kube.patch(API_VERSION, KIND, "fixed", {"spec": change}, namespace=namespace)
    assert rejected.value.status == 422
    assert message in rejection_message(rejected.value)


def test_a_spec_edit_on_a_finished_object_is_observed(
    kube: Kube, operator: OperatorProcess, storage: StorageProcess, namespace: str
) -> None:
    create_cleanup(kube, namespace, "done", album_keys(namespace, 3))
    wait_for_phase(kube, namespace, "done", "Succeeded")
    for change in ({"ttlSecondsAfterFinished": 86400}, {"activeDeadlineSeconds": 60}, {"retryNonce": "x"}):
        edited = kube.patch(API_VERSION, KIND, "done", {"spec": change}, namespace=namespace)

        def observed(generation: int = edited["metadata"]["generation"]) -> Manifest | None:
            found = get_cleanup(kube, namespace, "done")
            return found if found["status"].get("observedGeneration") == generation else None

        eventually(f"observedGeneration to follow {change}", observed)
    assert get_cleanup(kube, namespace, "done")["status"]["phase"] == "Succeeded"  # nothing was redone


@pytest.mark.parametrize(
    "status",
    [
        {"pendingIndexes": "0-5000000"},  # 5 million indexes for 3 keys: refused before it is expanded
        {"pendingIndexes": "7"},
        {"deleted": 3, "pendingIndexes": "0-2"},
        {"chunkSize": 0},
    ],
    ids=["huge-range", "out-of-range", "does-not-add-up", "chunk-size"],
)
def test_a_status_that_does_not_describe_the_object_is_not_trusted(
    kube: Kube, operator: OperatorProcess, storage: StorageProcess, namespace: str, status: dict[str, Any]
) -> None:
    keys = album_keys(namespace, 3)
    storage.seed(keys)
    storage.fault(latency_seconds=0.3)
    create_cleanup(kube, namespace, "edited", keys, chunkSize=1, maxRetries=0)

    eventually("the first call", lambda: storage.stats()["calls"] > 0, interval=0.02)
    operator.stop()  # it checkpoints on the way out; hand-edit that while nobody works on it
    base = {"phase": "Backoff", "total": 3, "deleted": 0, "pendingIndexes": "0-2", "failedIndexes": ""}
    kube.patch_status(API_VERSION, KIND, "edited", {"status": {**base, **status}}, namespace=namespace)
    storage.fault()
    operator.start()
    done = wait_for_phase(kube, namespace, "edited", "Succeeded")["status"]
    assert (done["total"], done["deleted"], done["failed"]) == (3, 3, 0)
    warnings = [
        message for kind, reason, message in kube.events(namespace, "edited") if reason == "InvalidStatus"
    ]
    assert len(warnings) == 1
    assert "starting over from the keys" in warnings[0]
    assert not any(storage.exists(key) for key in keys)


# A cluster whose CRD has none of the rules (an old install kept with crds.enabled=false, a hand-edited
# CRD, a Kubernetes without CEL): the operator must check keys and the policy itself.


@pytest.fixture(scope="module")
def lax_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Kube]]:
    plane = ControlPlane(tmp_path_factory.mktemp("lax-plane"))
    plane.start(obtain_binaries())
    from kubernetes import config  # noqa: PLC0415  (this module's own client, for this plane)

    api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    kube = Kube(api)
    crd = copy.deepcopy(yaml.safe_load(CRD_FILE.read_text()))
    (version,) = crd["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    kube.apply_crd(crd)
    try:
        yield plane, kube
    finally:
        api.close()
        plane.stop()


def test_without_the_crds_rules_the_operator_refuses_keys_that_could_escape_the_policy(
    lax_cluster: tuple[ControlPlane, Kube], storage: StorageProcess, tmp_path: Path
) -> None:
    plane, kube = lax_cluster
    namespace = kube.create_namespace("lax")
    config = operator_config(storage)
    config["storages"]["photos"]["policy"] = {"allowedNamespaces": "*", "keyPrefix": "tenants/{namespace}/"}
    theirs = f"tenants/{namespace}/../other-team/photo.jpg"  # the reference server normalises it
    storage.seed(["tenants/other-team/photo.jpg"])
    operator = OperatorProcess(tmp_path, plane.kubeconfig, config, [namespace])
    operator.start()
    try:
        create_cleanup(kube, namespace, "escape", [f"tenants/{namespace}/mine.jpg", theirs])
        create_cleanup(kube, namespace, "dot", [f"tenants/{namespace}/./mine.jpg"])
        typed = file_cleanup("typed", keys=["placeholder"])
        typed["spec"]["keys"] = "not a list"  # what a CRD without a schema lets through
        kube.create(typed, namespace=namespace)
        failed = {
            name: wait_for_phase(kube, namespace, name, "Failed")["status"]
            for name in ("escape", "dot", "typed")
        }
    finally:
        operator.stop()
    reasons = {
        name: next(c for c in status["conditions"] if c["type"] == "Failed")
        for name, status in failed.items()
    }
    assert {condition["reason"] for condition in reasons.values()} == {"InvalidSpec"}
    assert "a key must not contain a '..' path segment" in reasons["escape"]["message"]
    assert "a key must not have a '.' path segment" in reasons["dot"]["message"]
    assert "keys: Input should be a valid list" in reasons["typed"]["message"]
    assert storage.stats()["calls"] == 0  # nothing reached the storage
    assert storage.exists("tenants/other-team/photo.jpg")
    assert json.dumps(failed).count(theirs) == 0  # the rejection names the rule, not the key's value
