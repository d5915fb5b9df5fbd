"""Two replicas: one works, the other stands by and takes over when the first is killed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

from filecleanup.testing.processes import OperatorProcess
from filecleanup.testing.storages import StorageProcess
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.conftest import CRD_FILE
from tests.integration.conftest import operator_config
from tests.kube import Kube, Manifest

PEERING_CRDS = CRD_FILE.with_name("kopf.dev_peerings.yaml")
LIFETIME = 4


def test_standby_takes_over_when_the_active_replica_dies(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    for document in yaml.safe_load_all(PEERING_CRDS.read_text()):
        kube.apply_crd(document)
    namespace = kube.create_namespace("standby")
    kube.create(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "filecleanup"}}, namespace
    )
    config = operator_config(storage)
    args = ("--peering", "filecleanup", "--peering-lifetime", str(LIFETIME))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    active = OperatorProcess(tmp_path / "a", kubeconfig, config, [namespace])
    standby = OperatorProcess(tmp_path / "b", kubeconfig, config, [namespace])
    keys = album_keys(namespace, 600)
    storage.fault(latency_seconds=0.3)
    active.start(*args)
    time.sleep(0.5)  # started later: a lower priority
    standby.start(*args)
    try:
        create_cleanup(kube, namespace, "long", keys, chunkSize=20)

        def progressing() -> Manifest | None:
            found = get_cleanup(kube, namespace, "long")
            return found if found.get("status", {}).get("deleted", 0) > 0 else None

        kube.wait_for("the active replica to make progress", progressing, timeout=30)
        # The standby starts paused and stays so while the active replica lives.
        assert "Resuming operations" not in standby.log_text()
        assert "delete-keys" not in standby.log_text()
        active.stop(signal.SIGKILL)
        killed = time.monotonic()
        done = wait_for_phase(kube, namespace, "long", "Succeeded", timeout=60)["status"]
        took_over_in = time.monotonic() - killed
    finally:
        active.stop()
        standby.stop()

    assert (done["total"], done["deleted"], done["failed"]) == (600, 600, 0)
    assert "Resuming operations after the pause" in standby.log_text()
    assert set(storage.stats()["requested"]) == set(keys)
    print(f"\nstandby: finished {took_over_in:.1f} s after the active replica was killed")  # noqa: T201
