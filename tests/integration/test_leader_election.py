"""Two replicas of one installation: only the Lease holder works; a standby takes over when the
holder dies (after the lease duration) or stops gracefully (at once, the Lease released)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from kubernetes.dynamic.exceptions import NotFoundError

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, checkpoint_at_gate, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import HELD_READ_TIMEOUT_SECONDS, Gate, StorageProcess
from tools.envtest.polling import eventually

LEASE = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")


def replicas(
    tmp_path: Path, kubeconfig: Path, storage: StorageProcess, namespace: str
) -> list[OperatorProcess]:
    config = operator_config(storage)
    config["storages"]["photos"]["readTimeoutSeconds"] = HELD_READ_TIMEOUT_SECONDS  # calls held at a gate
    pair = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pair.append(OperatorProcess(tmp_path / name, kubeconfig, config, [namespace]))
    return pair


def start(replica: OperatorProcess, namespace: str) -> None:
    """Start a replica; it may stand by (never ready) while the other works."""
    replica.start("--leader-elect", f"--leader-election-namespace={namespace}", *LEASE, wait_ready=False)


def holder(kube: Kube, namespace: str) -> str:
    try:
        lease = kube.get("coordination.k8s.io/v1", "Lease", "filecleanup-operator", namespace=namespace)
    except NotFoundError:  # no replica has created it yet
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


def identity(replica: OperatorProcess) -> str:
    """The replica's identity, as it logged it when it acquired the Lease."""
    found = re.search(r"Acquired Lease \S+ as (\S+)", replica.log_text())
    return found[1] if found else ""


def test_two_replicas_send_every_key_once_and_finish_every_object(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("leader")
    pair = replicas(tmp_path, kubeconfig, storage, namespace)
    albums = {f"album-{n}": album_keys(f"{namespace}/{n}", 20) for n in range(50)}
    for replica in pair:
        start(replica, namespace)
    try:
        for name, keys in albums.items():
            create_cleanup(kube, namespace, name, keys, chunkSize=5)
        for name in albums:
            assert wait_for_phase(kube, namespace, name, "Succeeded")["status"]["deleted"] == 20
        # Before the holder stops, when the standby would take over.
        (standby_log,) = [replica.log_text() for replica in pair if not identity(replica)]
    finally:
        for replica in pair:
            replica.stop()
    requested = storage.stats()["requested"]
    assert sorted(requested) == sorted(key for keys in albums.values() for key in keys)
    assert set(requested.values()) == {1}  # one replica worked: each key sent exactly once
    assert "Standing by: Lease" in standby_log
    assert "delete-keys" not in standby_log


def test_a_standby_finishes_the_work_when_the_holder_is_killed(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("leader")
    first, second = replicas(tmp_path, kubeconfig, storage, namespace)
    keys = album_keys(namespace, 600)
    gate = Gate(storage)
    gate.close(after=5)  # calls of 20 keys: then every call waits at the storage
    start(first, namespace)
    eventually("the first replica to hold the Lease", lambda: holder(kube, namespace))
    start(second, namespace)
    try:
        create_cleanup(kube, namespace, "long", keys, chunkSize=20)
        gate.wait_held()
        # The holder has made progress (a checkpoint), and holds the rest of the work.
        progress = checkpoint_at_gate(kube, namespace, "long", gate, beyond=100, total_keys=len(keys))
        assert holder(kube, namespace) == identity(first)
        first.stop(signal.SIGKILL)
        killed = time.monotonic()
        gate.open()
        eventually(
            "the standby to take the Lease",
            lambda: bool(identity(second)) and holder(kube, namespace) == identity(second),
            timeout=30,
        )
        took_over_in = time.monotonic() - killed
        done = wait_for_phase(kube, namespace, "long", "Succeeded", timeout=60)["status"]
        finished_in = time.monotonic() - killed
    finally:
        first.stop()
        second.stop()
    assert (done["total"], done["deleted"], done["failed"]) == (600, 600, 0)
    assert 100 < progress["status"]["deleted"] <= 20 * gate.through < 600  # the standby did the rest
    assert 3.0 < took_over_in < 4 + 3 * 1.2 + 2  # the lease duration, plus a few retry periods at most
    print(f"\nlease: taken over {took_over_in:.1f} s after a SIGKILL; finished {finished_in:.1f} s after")  # noqa: T201


def test_a_graceful_stop_hands_the_lease_over_at_once(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("leader")
    first, second = replicas(tmp_path, kubeconfig, storage, namespace)
    start(first, namespace)
    eventually("the first replica to hold the Lease", lambda: holder(kube, namespace))
    start(second, namespace)
    try:
        first.stop(signal.SIGTERM)
        stopped = time.monotonic()
        eventually(
            "the standby to take the Lease",
            lambda: bool(identity(second)) and holder(kube, namespace) == identity(second),
            timeout=30,
            interval=0.05,
        )
        handed_over_in = time.monotonic() - stopped
        create_cleanup(kube, namespace, "after", album_keys(namespace, 5))
        wait_for_phase(kube, namespace, "after", "Succeeded")
    finally:
        second.stop()
    assert handed_over_in < 1.2 * 1 + 1  # one retry period, not the lease duration
    assert "Released Lease" in first.log_text()


def test_a_holder_that_loses_its_lease_stops_working_and_exits(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("leader")
    (only, _) = replicas(tmp_path, kubeconfig, storage, namespace)
    start(only, namespace)
    eventually("the replica to hold the Lease", lambda: holder(kube, namespace))
    kube.patch(
        "coordination.k8s.io/v1",
        "Lease",
        "filecleanup-operator",
        {"spec": {"holderIdentity": "another-installation-by-mistake"}},
        namespace=namespace,
    )
    assert only.process is not None
    exit_code = only.process.wait(timeout=15)
    assert exit_code == 1  # the pod restarts as a candidate, as controller-runtime's managers do
    assert "Stopping: Lease" in only.log_text()
    assert "was taken by another-installation-by-mistake" in only.log_text()


def test_a_paused_leader_that_resumes_cannot_move_the_status_back(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    """A leader stopped past its Lease (a long GC pause, a frozen VM: SIGSTOP) while the standby takes
    over and finishes, then resumed (SIGCONT) with calls it had in flight: its status writes were
    computed before the takeover, and the fence refuses them. status.deleted never decreases."""
    namespace = kube.create_namespace("leader")
    first, second = replicas(tmp_path, kubeconfig, storage, namespace)
    keys = album_keys(namespace, 600)
    gate = Gate(storage)
    gate.close(after=5)
    start(first, namespace)
    eventually("the first replica to hold the Lease", lambda: holder(kube, namespace))
    start(second, namespace)
    created = create_cleanup(kube, namespace, "paused", keys, chunkSize=20)
    writes = kube.watch_revisions(
        API_VERSION, KIND, namespace, "paused", created["metadata"]["resourceVersion"]
    )
    try:
        gate.wait_held()
        checkpoint_at_gate(kube, namespace, "paused", gate, beyond=100, total_keys=len(keys))
        paused = first.process
        assert paused is not None
        paused.send_signal(signal.SIGSTOP)  # its calls stay in flight, unread
        gate.open()
        eventually(
            "the standby to take the Lease",
            lambda: bool(identity(second)) and holder(kube, namespace) == identity(second),
            timeout=30,
        )
        wait_for_phase(kube, namespace, "paused", "Succeeded", timeout=60)
        paused.send_signal(signal.SIGCONT)  # it reads its calls' replies, and would write
        eventually("the resumed replica to give up", lambda: paused.poll() is not None, timeout=30)
        deleted = writes.stop(settle=2.0)
    finally:
        if first.process is not None:
            first.process.send_signal(signal.SIGCONT)
        first.stop()
        second.stop()
    done = get_cleanup(kube, namespace, "paused")["status"]
    assert (done["phase"], done["total"], done["deleted"], done["failed"]) == ("Succeeded", 600, 600, 0)
    assert deleted > 0
    assert writes.deleted == sorted(writes.deleted), writes.deleted  # never moved back
    assert writes.deleted[-1] == 600
