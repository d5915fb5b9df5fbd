"""SIGKILL the operator mid-run: the restarted one resumes from the status checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path

from filecleanup.api.indexes import parse_ranges
from tests.cleanups import album_keys, checkpoint_at_gate, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import HELD_READ_TIMEOUT_SECONDS, Gate, StorageProcess

CHUNK = 20
FIRST_CALLS = 20  # answered before every call waits at the storage


def test_killed_operator_resumes_without_resending_confirmed_keys(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("crash")
    config = operator_config(storage)
    config["storages"]["photos"]["readTimeoutSeconds"] = HELD_READ_TIMEOUT_SECONDS
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["crash-*"])
    keys = album_keys(namespace, 2000)
    storage.seed(keys)
    gate = Gate(storage)
    gate.close(after=FIRST_CALLS)
    operator.start()
    try:
        create_cleanup(kube, namespace, "crashy", keys, chunkSize=CHUNK)
        gate.wait_held()
        # Killed at a checkpoint made while the round was held: some calls recorded, some in flight.
        checkpoint_at_gate(kube, namespace, "crashy", gate, beyond=CHUNK * FIRST_CALLS, total_keys=len(keys))
        operator.stop(signal.SIGKILL)
        checkpoint = get_cleanup(kube, namespace, "crashy")["status"]
        sent_before_restart = storage.stats()["requested"]
        gate.open()
        operator.start()
        done = wait_for_phase(kube, namespace, "crashy", "Succeeded", timeout=60)["status"]
    finally:
        operator.stop()

    assert (done["total"], done["deleted"], done["failed"], done["retries"]) == (2000, 2000, 0, 0)
    assert CHUNK * FIRST_CALLS < checkpoint["deleted"] <= CHUNK * gate.through < len(keys)
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
