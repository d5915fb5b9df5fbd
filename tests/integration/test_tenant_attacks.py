"""A tenant attacking the manifest path, as an attacker would: ordinary rights in its own namespace,
write access to its own prefix of the storage, the real API server and the operator process. Each test
holds the system where the attack happens (a suspended object, a gate in the storage server), so
none races a latency.

The storages allow every namespace only ``tenants/{namespace}/``; the victim's file lies under
another tenant's prefix, and must survive every attack."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import get_cleanup, wait_for_phase
from tests.kube import Kube
from tools.devkit.chart import service_account_kubeconfig
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import DirectoryStorage, StorageProcess
from tools.envtest.polling import eventually

CHART = Path(__file__).parents[2] / "charts" / "filecleanup-operator"
TENANT_POLICY = {"allowedNamespaces": "*", "keyPrefix": "tenants/{namespace}/"}
VICTIM = "tenants/victim/photo.jpg"
HOUR = {"initialSeconds": 3600, "maxSeconds": 3600}


@pytest.fixture
def volume(tmp_path: Path) -> DirectoryStorage:
    return DirectoryStorage(tmp_path / "volume")


@pytest.fixture
def attacked(
    crd: None, kubeconfig: Path, storage: StorageProcess, volume: DirectoryStorage, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator whose storages keep each namespace to its own prefix."""
    config = {
        "defaultStorage": "volume",
        "chunksInFlightPerObject": 1,
        "statusIntervalSeconds": 0,  # a checkpoint after every call: reports are written at once
        "storages": {
            "volume": {**volume.operator_storage(), "policy": TENANT_POLICY},
            "photos": {**storage.operator_storage(), "policy": TENANT_POLICY},
        },
    }
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["attack-*"])
    operator.start()
    yield operator
    operator.stop()


def create_manifest_cleanup(kube: Kube, namespace: str, name: str, manifest: str, **spec: Any) -> None:
    kube.create(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name},
            "spec": {"manifest": {"key": manifest}, **spec},
        },
        namespace,
    )


def set_suspend(kube: Kube, namespace: str, name: str, *, suspend: bool) -> None:
    kube.patch(API_VERSION, KIND, name, {"spec": {"suspend": suspend}}, namespace)


def condition_of(obj: dict[str, Any], kind: str = "Failed") -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def test_a_line_forged_into_a_failure_report_is_never_sent(
    kube: Kube, attacked: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("attack")
    mine = f"tenants/{namespace}"
    manifest = f"{mine}/m.keys"
    storage.seed([VICTIM])
    httpx.put(
        f"{storage.base}/objects/{manifest}", content=f"{mine}/0.jpg\n{mine}/1.jpg\n"
    ).raise_for_status()
    # The first call fails its key, and its report segment is written at once; the second call waits
    # at the storage while the tenant adds a line to that segment.
    storage.fault(fail_keys={f"{mine}/0.jpg": -1}, hold_from_call=2)
    create_manifest_cleanup(
        kube, namespace, "album", manifest, storage="photos", chunkSize=1, backoff={"initialSeconds": 1}
    )
    segment = storage.root / f"{manifest}.report/{namespace}/album/round-0000/00000"
    eventually(
        "the first segment written and the second call held",
        lambda: segment.exists() and storage.stats()["in_flight"] == 1,
        timeout=60,
    )
    segment.write_text(segment.read_text() + f"{VICTIM}\tforged\n")
    storage.fault(fail_keys={f"{mine}/0.jpg": -1})

    failed = wait_for_phase(kube, namespace, "album", "Failed")
    assert storage.exists(VICTIM)
    assert VICTIM not in storage.stats()["requested"]
    reason = condition_of(failed)
    assert reason["reason"] == "InvalidManifest"
    assert "is not one this operator wrote" in reason["message"]
    assert ("Warning", "InvalidManifest") in {
        (kind, reason) for kind, reason, _ in kube.events(namespace, "album")
    }


def test_a_manifest_replaced_after_its_check_is_not_followed(
    kube: Kube, attacked: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("attack")
    keys = [f"tenants/{namespace}/albums/1/{i:05d}.jpg" for i in range(30_000)]  # 1.2 MB: many reads
    manifest = f"tenants/{namespace}/big.keys"
    storage.seed([VICTIM])
    put = f"{storage.base}/objects/{manifest}"
    httpx.put(put, content="".join(f"{key}\n" for key in keys).encode(), timeout=30).raise_for_status()
    storage.fault(hold_from_call=1)  # the first calls wait at the storage: the rest of the manifest is unread
    create_manifest_cleanup(kube, namespace, "big", manifest, storage="photos", chunkSize=1000)

    def checked_and_held() -> bool:
        status = get_cleanup(kube, namespace, "big").get("status") or {}
        return bool((status.get("manifest") or {}).get("checked")) and storage.stats()["in_flight"] > 0

    eventually("the manifest checked and the first call held", checked_and_held, timeout=60)
    swapped = [*keys[:-1], VICTIM]
    httpx.put(put, content="".join(f"{key}\n" for key in swapped).encode(), timeout=30).raise_for_status()
    storage.fault()

    failed = wait_for_phase(kube, namespace, "big", "Failed")
    assert storage.exists(VICTIM)
    assert VICTIM not in storage.stats()["requested"]
    assert condition_of(failed)["reason"] == "ManifestChanged"


def test_forged_manifest_progress_in_status_is_not_followed(
    kube: Kube, attacked: OperatorProcess, volume: DirectoryStorage
) -> None:
    namespace = kube.create_namespace("attack")
    mine = f"tenants/{namespace}"
    volume.seed([f"{mine}/1.jpg", f"{mine}/2.jpg", VICTIM])
    (volume.root / mine / "m.keys").write_text(f"{mine}/1.jpg\n{mine}/2.jpg\n")
    create_manifest_cleanup(kube, namespace, "album", f"{mine}/m.keys", suspend=True)
    wait_for_phase(kube, namespace, "album", "Suspended")
    report = volume.root / f"{mine}/m.keys.report/{namespace}/album/round-0000/00000"
    report.parent.mkdir(parents=True)
    report.write_text(f"{VICTIM}\tforged\t\n")
    # The status a run in round 1 would have, pointing at the report the tenant wrote.
    forged = {"checked": True, "round": 1, "sources": 1, "roundTotal": 1, "size": 1, "version": "x"}
    kube.patch_status(API_VERSION, KIND, "album", {"status": {"total": 1, "manifest": forged}}, namespace)
    set_suspend(kube, namespace, "album", suspend=False)

    done = wait_for_phase(kube, namespace, "album", "Succeeded")
    assert volume.exists(VICTIM)
    assert not volume.exists(f"{mine}/1.jpg")
    assert (done["status"]["total"], done["status"]["deleted"]) == (2, 2)
    assert ("Warning", "InvalidStatus") in {
        (kind, reason) for kind, reason, _ in kube.events(namespace, "album")
    }


def test_a_report_that_can_never_be_written_is_no_success(
    kube: Kube, attacked: OperatorProcess, volume: DirectoryStorage
) -> None:
    namespace = kube.create_namespace("attack")
    mine = f"tenants/{namespace}"
    volume.seed([f"{mine}/ok.jpg"])
    (volume.root / mine / "dir.jpg").mkdir()  # fails
    (volume.root / mine / "m.keys").write_text(f"{mine}/ok.jpg\n{mine}/dir.jpg\n")
    (volume.root / mine / "m.keys.report").write_text("in the way")  # no directory can be made here
    create_manifest_cleanup(kube, namespace, "album", f"{mine}/m.keys", backoff=HOUR)

    failed = wait_for_phase(kube, namespace, "album", "Failed")
    reason = condition_of(failed)
    assert reason["reason"] == "InvalidManifest"
    assert "a failure report cannot be written" in reason["message"]
    assert failed["status"]["deleted"] <= 1  # never more than the storage confirmed, and the failed key
    assert volume.exists(f"{mine}/dir.jpg")  # not reported as deleted


def test_a_report_path_too_long_to_store_fails_before_anything_is_deleted(
    kube: Kube, attacked: OperatorProcess, volume: DirectoryStorage
) -> None:
    namespace = kube.create_namespace("attack")
    mine = f"tenants/{namespace}"
    manifest = f"{mine}/{'m' * 250}"  # a file name that fits; its report directory's does not
    volume.seed([f"{mine}/ok.jpg"])
    (volume.root / manifest).write_text(f"{mine}/ok.jpg\n")
    create_manifest_cleanup(kube, namespace, "album", manifest)

    failed = wait_for_phase(kube, namespace, "album", "Failed")
    assert condition_of(failed)["reason"] == "InvalidManifest"
    assert "longer than 255 bytes" in condition_of(failed)["message"]
    assert volume.exists(f"{mine}/ok.jpg")


def test_fifos_and_directories_as_manifests_fail_at_once_and_stall_nobody(
    kube: Kube, attacked: OperatorProcess, volume: DirectoryStorage
) -> None:
    namespace = kube.create_namespace("attack")
    mine = f"tenants/{namespace}"
    (volume.root / mine).mkdir(parents=True)
    for number in range(8):  # more than the storage's own threads
        os.mkfifo(volume.root / mine / f"fifo-{number}.keys")
        create_manifest_cleanup(kube, namespace, f"fifo-{number}", f"{mine}/fifo-{number}.keys")
    (volume.root / mine / "dir.keys").mkdir()
    create_manifest_cleanup(kube, namespace, "dir", f"{mine}/dir.keys")
    volume.seed([f"{mine}/photo.jpg"])
    (volume.root / mine / "real.keys").write_text(f"{mine}/photo.jpg\n")
    create_manifest_cleanup(kube, namespace, "real", f"{mine}/real.keys")

    wait_for_phase(kube, namespace, "real", "Succeeded")
    for name in [*(f"fifo-{number}" for number in range(8)), "dir"]:
        failed = wait_for_phase(kube, namespace, name, "Failed")
        assert condition_of(failed)["reason"] == "InvalidManifest", name
        warnings = [reason for kind, reason, _ in kube.events(namespace, name) if kind == "Warning"]
        assert warnings == ["InvalidManifest"], name  # one event, never an endless outage


def test_a_tenant_bound_to_the_charts_editor_role_cannot_write_status(
    kube: Kube, kubeconfig: Path, crd: None, helm: Path, tmp_path: Path
) -> None:
    rendered = subprocess.run(
        [str(helm), "template", "fc", str(CHART), "--show-only", "templates/tenant-roles.yaml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    roles = [document for document in yaml.safe_load_all(rendered) if document]
    editor = next(role for role in roles if role["metadata"]["name"].endswith("-editor"))
    editor["metadata"]["name"] += f"-{tmp_path.name[-12:].lower().strip('_')}"
    kube.create(editor)
    namespace = kube.create_namespace("attack")
    kube.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "album-service"}}, namespace
    )
    kube.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "album-service"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": editor["metadata"]["name"],
            },
            "subjects": [{"kind": "ServiceAccount", "name": "album-service", "namespace": namespace}],
        },
        namespace,
    )
    tenant = service_account_kubeconfig(kubeconfig, namespace, "album-service", tmp_path / "tenant")
    obj = f"{API_VERSION.split('/')[0]}"

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["kubectl", "--kubeconfig", str(tenant), "--namespace", namespace, *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "album"},
        "spec": {"keys": [f"tenants/{namespace}/1.jpg"], "suspend": True},
    }
    created = subprocess.run(
        ["kubectl", "--kubeconfig", str(tenant), "--namespace", namespace, "create", "-f", "-"],
        input=yaml.safe_dump(manifest),
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert (
        kubectl(
            "patch", f"filecleanups.{obj}", "album", "--type=merge", "-p", '{"spec":{"suspend":false}}'
        ).returncode
        == 0
    )
    forged = kubectl(
        "patch",
        f"filecleanups.{obj}",
        "album",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Succeeded"}}',
    )
    assert forged.returncode != 0
    assert "forbidden" in forged.stderr.lower()
