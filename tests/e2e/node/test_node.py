"""The chart as a real cluster runs it: the controller-manager makes the pod, the scheduler places it,
the kubelet runs it from the image, probes it, projects its token, stops it within its grace period
and replaces it; `helm test`, `helm upgrade` and `helm uninstall` behave as the README's Install with
Helm says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from filecleanup.api.indexes import parse_ranges
from filecleanup.decide import receipts
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.e2e.conftest import RELEASE, RELEASE_NAMESPACE, Storages, secret_data
from tests.e2e.container.pods import grant_group
from tests.e2e.node.conftest import NODE_NAME, Release, wait_for
from tests.kube import Kube, Manifest
from tools.devkit.storages import S3_BUCKET
from tools.envtest.polling import eventually

CRD = "filecleanups.filecleanup.dev"


def liveness_probes(release: Release, pod: str) -> float:
    """How many liveness probes of ``pod`` succeeded, by the kubelet's own count."""
    metrics = release.cli.kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/metrics/probes").stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "prober_probe_total"
        and sample.labels.get("pod") == pod
        and sample.labels.get("probe_type") == "Liveness"
        and sample.labels.get("result") == "successful"
    )


def test_the_deployment_becomes_available_and_the_kubelet_probes_it(release: Release) -> None:
    (pod,) = release.pods()
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert not pod["spec"].get("hostNetwork")  # a pod network, not the node's
    assert (
        wait_for("a successful liveness probe by the kubelet", lambda: liveness_probes(release, name), 60)
        >= 1
    )
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0
    # runAsNonRoot was checked by the kubelet against the image; the downward API and the projected
    # ServiceAccount token reached the container.
    identity = release.kubectl(
        "exec",
        name,
        "--",
        "python",
        "-c",
        (
            "import os; print(os.getuid(), os.environ['POD_NAME'], "
            "os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token'))"
        ),
    ).split()
    assert identity == ["65532", name, "True"]


def test_cleanups_complete_on_every_storage(release: Release, storages: Storages, kube: Kube) -> None:
    namespace = kube.create_namespace("albums")
    keys = {name: album_keys(f"{namespace}/{name}", 30) for name in ("photos", "archive", "shared")}
    storages.http.seed(keys["photos"])
    storages.s3.seed(keys["archive"])
    storages.volume.seed(keys["shared"])
    grant_group(storages.volume.root, 65532)  # the album service's pods write with the shared fsGroup
    for name, its_keys in keys.items():
        create_cleanup(kube, namespace, f"album-{name}", its_keys, storage=name, chunkSize=7)
    for name in keys:
        status = wait_for_phase(kube, namespace, f"album-{name}", "Succeeded")["status"]
        assert (status["total"], status["deleted"], status["failed"]) == (30, 30, 0)
    assert not any(storages.http.exists(key) for key in keys["photos"])
    assert not any(storages.s3.exists(key) for key in keys["archive"])
    assert not any(storages.volume.exists(key) for key in keys["shared"])


def test_a_finished_object_has_a_receipt_that_the_releases_key_verifies(
    release: Release, storages: Storages, kube: Kube
) -> None:
    namespace = kube.create_namespace("albums")
    keys = album_keys(namespace, 3)
    storages.http.seed(keys)
    create_cleanup(kube, namespace, "album-receipt", keys)
    place = wait_for_phase(kube, namespace, "album-receipt", "Succeeded")["status"]["receipt"]
    assert place["storage"] == "archive"
    stored = storages.s3.client().get_object(Bucket=S3_BUCKET, Key=place["key"])["Body"].read()
    (secret,) = secret_data(release.cli, f"{release.deployment}-receipt-key").values()
    document, problem = receipts.verify(stored, secret.strip())
    assert problem is None
    assert document is not None
    assert document["keys"]["list"] == keys
    assert document["counts"] == {"total": 3, "deleted": 3, "failed": 0}


def test_helm_test_passes_and_fails_without_the_operator(release: Release) -> None:
    passed = release.cli.helm("test", RELEASE, "-n", RELEASE_NAMESPACE, "--timeout", "120s")
    assert "Phase:          Succeeded" in passed.stdout, passed.stdout
    release.kubectl("scale", f"deployment/{release.deployment}", "--replicas=0")
    try:
        wait_for("the operator's pod to go", lambda: not release.pods())
        failed = release.cli.helm(
            "test", RELEASE, "-n", RELEASE_NAMESPACE, "--logs", "--timeout", "120s", check=False
        )
    finally:
        release.kubectl("scale", f"deployment/{release.deployment}", "--replicas=1")
        release.wait_available()
    assert failed.returncode != 0
    assert (
        f"the operator did not answer through Service {RELEASE_NAMESPACE}/{release.deployment}"
        in failed.stdout
    )


def start_big_cleanup(storages: Storages, kube: Kube, count: int, latency: float) -> tuple[str, list[str]]:
    namespace = kube.create_namespace("albums")
    keys = album_keys(namespace, count)
    storages.http.reset()
    storages.http.seed(keys)
    storages.http.fault(latency_seconds=latency)
    create_cleanup(kube, namespace, "album-big", keys, chunkSize=10)

    def progressed() -> Manifest | None:
        found = get_cleanup(kube, namespace, "album-big")
        return found if found.get("status", {}).get("deleted", 0) > 0 else None

    eventually("a first checkpoint", progressed, timeout=60, interval=0.05)
    return namespace, keys


def confirmed_keys(status: dict[str, Any], keys: list[str]) -> set[str]:
    return set(keys) - {keys[i] for i in parse_ranges(status["pendingIndexes"], len(keys))}


def test_a_deleted_pod_is_replaced_and_the_new_one_resumes_with_exact_counts(
    release: Release, storages: Storages, kube: Kube
) -> None:
    namespace, keys = start_big_cleanup(storages, kube, 1000, latency=0.2)
    (old,) = release.pods()
    # The old pod's calls go on; its successor's wait at the storage until the old pod's count is read.
    storages.http.fault(latency_seconds=0.2, hold_from_call=1, pass_clients=[old["status"]["podIP"]])
    started = time.monotonic()
    release.kubectl("delete", "pod", old["metadata"]["name"], "--wait=true")  # SIGTERM, grace period
    seconds = time.monotonic() - started
    stopped = get_cleanup(kube, namespace, "album-big")["status"]
    assert stopped["deleted"] == storages.http.stats()["removed_files"]  # every confirmed deletion recorded
    storages.http.fault(latency_seconds=0.2)
    done = wait_for_phase(kube, namespace, "album-big", "Succeeded", timeout=120)["status"]
    assert (done["total"], done["deleted"], done["failed"]) == (1000, 1000, 0)
    requested = storages.http.stats()["requested"]
    assert all(requested[key] == 1 for key in confirmed_keys(stopped, keys))
    assert seconds < old["spec"]["terminationGracePeriodSeconds"]
    print(f"\npod deletion: {seconds:.1f} s; {stopped['deleted']} of 1000 recorded before the new pod")  # noqa: T201


def test_rollout_restart_under_load_loses_nothing(release: Release, storages: Storages, kube: Kube) -> None:
    namespace = kube.create_namespace("albums")
    albums = {f"album-{n}": album_keys(f"{namespace}/{n}", 300) for n in range(4)}
    storages.http.reset()
    storages.http.seed([key for keys in albums.values() for key in keys])
    storages.http.fault(latency_seconds=0.1)
    for name, keys in albums.items():
        create_cleanup(kube, namespace, name, keys, chunkSize=10)
    wait_for("deletions under way", lambda: storages.http.stats()["removed_files"] > 100, 60, 0.05)
    release.kubectl("rollout", "restart", f"deployment/{release.deployment}")
    release.wait_available()
    for name, keys in albums.items():
        status = wait_for_phase(kube, namespace, name, "Succeeded", timeout=120)["status"]
        assert (status["total"], status["deleted"], status["failed"]) == (len(keys), len(keys), 0)
    assert not any(storages.http.exists(key) for keys in albums.values() for key in keys)


def kill(pod: str, release: Release) -> None:
    """SIGKILL the pod's container from the node, as the kernel's OOM killer would: no grace, no
    chance to release the Lease. The kubelet then restarts the container in the same pod."""
    status = json.loads(release.kubectl("get", "pod", pod, "-o", "json"))["status"]
    container = status["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    socket = Path(os.environ["FILECLEANUP_NODE_DIR"]) / "containerd" / "containerd.sock"
    tasks = subprocess.run(
        ["ctr", "--address", str(socket), "-n", "k8s.io", "tasks", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pid = next(int(line.split()[1]) for line in tasks.splitlines() if line.startswith(container))
    os.kill(pid, signal.SIGKILL)


def lease_holder(release: Release) -> str:
    """The pod that works: the holder of the release's Lease."""
    lease = release.kubectl(
        "get", "lease", release.deployment, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return lease.strip()


def test_a_killed_container_is_restarted_by_the_kubelet_and_finishes_the_work(
    release: Release, storages: Storages, kube: Kube
) -> None:
    namespace, keys = start_big_cleanup(storages, kube, 600, latency=0.2)
    (pod,) = release.pods()
    name = pod["metadata"]["name"]
    kill(name, release)

    def restarted() -> bool:
        (now,) = release.pods()
        statuses = now["status"].get("containerStatuses") or [{}]
        return bool(now["metadata"]["name"] == name and statuses[0].get("restartCount", 0) >= 1)

    wait_for("the kubelet to restart the container", restarted, 60)
    # The new process waits out the dead one's Lease, then resumes from the last checkpoint.
    done = wait_for_phase(kube, namespace, "album-big", "Succeeded", timeout=180)["status"]
    assert (done["total"], done["deleted"], done["failed"]) == (600, 600, 0)
    assert not any(storages.http.exists(key) for key in keys)
    release.wait_available()  # ready again, in the same pod


def test_with_two_replicas_the_standby_finishes_when_the_working_pod_is_killed(
    release: Release, storages: Storages, kube: Kube
) -> None:
    release.upgrade("--set", "replicaCount=2")
    try:
        wait_for(
            "two pods, one holding the Lease", lambda: len(release.pods()) == 2 and lease_holder(release), 60
        )
        holder = lease_holder(release)
        leader = holder.rpartition("_")[0]  # the pod's name, then the process's suffix
        (standby,) = (pod["metadata"]["name"] for pod in release.pods() if pod["metadata"]["name"] != leader)
        namespace, keys = start_big_cleanup(storages, kube, 600, latency=0.2)
        # As when the leader's node is lost: the pod dies with no chance to release the Lease, and
        # its replacement cannot be placed yet, so the standby is the only candidate left.
        release.cli.kubectl("cordon", NODE_NAME)
        killed_at = time.monotonic()
        kill(leader, release)
        release.kubectl("delete", "pod", leader, "--grace-period=0", "--force", "--wait=false")
        wait_for("the standby to take the Lease", lambda: lease_holder(release) not in {"", holder}, 60, 0.2)
        takeover = time.monotonic() - killed_at
        assert lease_holder(release).rpartition("_")[0] == standby
        done = wait_for_phase(kube, namespace, "album-big", "Succeeded", timeout=180)["status"]
        assert (done["total"], done["deleted"], done["failed"]) == (600, 600, 0)
        assert not any(storages.http.exists(key) for key in keys)
        print(f"\nLease taken by the standby {standby} {takeover:.1f} s after {holder} was killed")  # noqa: T201
    finally:
        release.cli.kubectl("uncordon", NODE_NAME)
        release.upgrade("--set", "replicaCount=1")


def test_helm_upgrade_rolls_the_pod_and_uninstall_keeps_the_crd_and_the_objects(
    release: Release, kube: Kube
) -> None:
    namespace = kube.create_namespace("albums")
    create_cleanup(kube, namespace, "keep-me", [f"{namespace}/a.jpg"])
    wait_for_phase(kube, namespace, "keep-me", "Succeeded")
    (before,) = release.pods()
    receipt_key = f"{release.deployment}-receipt-key"
    signing = secret_data(release.cli, receipt_key)
    release.upgrade("--set", "logFormat=plain")
    (after,) = release.pods()
    assert secret_data(release.cli, receipt_key) == signing  # receipts signed before still verify
    assert after["metadata"]["name"] != before["metadata"]["name"]
    assert "--log-format=plain" in after["spec"]["containers"][0]["args"]
    crd = json.loads(release.cli.kubectl("get", "crd", CRD, "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    release.cli.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE)
    wait_for("the operator's pod to go", lambda: not release.pods(), 120)
    assert release.cli.kubectl("get", "crd", CRD, "-o", "name").stdout.strip().endswith(CRD)
    assert get_cleanup(kube, namespace, "keep-me")["status"]["phase"] == "Succeeded"
    assert secret_data(release.cli, receipt_key) == signing  # the receipts outlive the release: so does it
