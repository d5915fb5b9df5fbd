"""SIGKILL the operator mid-run: the restarted one resumes from the status checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path

from filecleanup.indexes import parse_ranges
from polling import eventually
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube, Manifest
from tests.support.processes import OperatorProcess
from tests.support.storages import StorageProcess


def test_killed_operator_resumes_without_resending_confirmed_keys(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("crash")
    operator = OperatorProcess(tmp_path, kubeconfig, operator_config(storage), ["crash-*"])
    keys = album_keys(namespace, 2000)
    storage.seed(keys)
    storage.fault(latency_seconds=0.1)
    operator.start()
    try:
        create_cleanup(kube, namespace, "crashy", keys, chunkSize=20)

        def checkpointed() -> Manifest | None:
            found = get_cleanup(kube, namespace, "crashy")
            return found if 0 < found.get("status", {}).get("deleted", 0) < len(keys) else None

        eventually("a checkpoint with progress", checkpointed, interval=0.05)
        operator.stop(signal.SIGKILL)
        checkpoint = get_cleanup(kube, namespace, "crashy")["status"]
        sent_before_restart = storage.stats()["requested"]
        operator.start()
        done = wait_for_phase(kube, namespace, "crashy", "Succeeded", timeout=60)["status"]
    finally:
        operator.stop()

    assert (done["total"], done["deleted"], done["failed"], done["retries"]) == (2000, 2000, 0, 0)
    pending_at_checkpoint = {keys[i] for i in parse_ranges(checkpoint["pendingIndexes"], len(keys))}
    confirmed_at_checkpoint = set(keys) - pending_at_checkpoint
    assert len(confirmed_at_checkpoint) == checkpoint["deleted"]
    requested = storage.stats()["requested"]
    assert set(requested) == set(keys)
    assert all(requested[key] == 1 for key in confirmed_at_checkpoint)  # never sent again
    resent = sum(requested.values()) - len(keys)
    in_flight_or_unrecorded = sum(sent_before_restart.values()) - checkpoint["deleted"]
    confirmed = checkpoint["deleted"]
    print(f"\ncrash: checkpoint had {confirmed} of 2000 confirmed; {resent} keys re-sent after restart")  # noqa: T201
    assert resent == in_flight_or_unrecorded
    assert not any(storage.exists(key) for key in keys)
