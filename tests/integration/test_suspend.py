"""Suspend and resume, the operator-wide pause, and cancel by deletion: against the real API server and
the reference server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_checkpoint_due, wait_for_phase
from tests.integration.conftest import operator_config, running_operator
from tests.integration.test_operator import condition
from tests.kube import Kube, Manifest
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import HELD_READ_TIMEOUT_SECONDS, Gate, StorageProcess

FIRST_CALLS = 4  # answered before the round is held at the gate


@pytest.fixture(scope="module")
def waiting_operator(
    crd: None, kubeconfig: Path, storage_process: StorageProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """An operator that waits for the calls held at a gate (the suite's times them out in a second),
    watching the namespaces named ``held-*``."""
    config = operator_config(storage_process)
    config["storages"]["photos"]["readTimeoutSeconds"] = HELD_READ_TIMEOUT_SECONDS
    yield from running_operator(tmp_path_factory.mktemp("waiting-operator"), kubeconfig, config, ["held-*"])


@pytest.fixture
def held_namespace(kube: Kube, waiting_operator: OperatorProcess) -> str:
    return kube.create_namespace("held")


def suspended_at_gate(kube: Kube, namespace: str, name: str, gate: Gate, total_keys: int | None) -> Manifest:
    """Suspend the object while its round waits at ``gate``; the object once Suspended.

    The round sees the suspension in the reply of its next checkpoint: once one is due, the held calls
    go one at a time until the round has stopped (the calls in flight answered, the phase written).
    Every call the storage saw was let through, and the round never ran out of chunks first."""
    kube.patch(API_VERSION, KIND, name, {"spec": {"suspend": True}}, namespace=namespace)
    wait_checkpoint_due(total_keys)

    def suspended() -> Manifest | None:
        found = get_cleanup(kube, namespace, name)
        return found if found.get("status", {}).get("phase") == "Suspended" else None

    return gate.step_until(f"{namespace}/{name} to be Suspended", suspended)


def test_suspend_stops_new_calls_and_resume_finishes_from_the_checkpoint(
    kube: Kube, held_namespace: str, storage: StorageProcess
) -> None:
    namespace = held_namespace
    keys = album_keys(namespace, 400)
    storage.seed(keys)
    gate = Gate(storage)
    gate.close(after=FIRST_CALLS)
    create_cleanup(kube, namespace, "paused", keys, chunkSize=10, maxRetries=0)
    gate.wait_held()

    suspended = suspended_at_gate(kube, namespace, "paused", gate, len(keys))
    assert condition(suspended, "Suspended")["reason"] == "Suspended"
    stats = storage.stats()
    calls = stats["calls"]
    assert (stats["in_flight"], calls) == (0, gate.through)  # every call answered; none since
    assert calls < len(keys) // 10  # it stopped before the end
    status = get_cleanup(kube, namespace, "paused")["status"]
    assert status["deleted"] == stats["removed_files"] == 10 * calls  # every call in flight recorded
    assert (status["retries"], status["failed"]) == (0, 0)  # no retry budget spent
    assert storage.stats(summary=True)["calls"] == calls  # a suspended object sends nothing

    gate.open()
    kube.patch(API_VERSION, KIND, "paused", {"spec": {"suspend": False}}, namespace=namespace)
    done = wait_for_phase(kube, namespace, "paused", "Succeeded")
    assert (done["status"]["deleted"], done["status"]["retries"]) == (400, 0)
    assert condition(done, "Suspended")["status"] == "False"
    assert condition(done, "Suspended")["reason"] == "Resumed"
    assert storage.stats()["requested"] == dict.fromkeys(keys, 1)  # resumed from the checkpoint


def test_an_object_created_suspended_sends_nothing(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    create_cleanup(kube, namespace, "held", album_keys(namespace, 5), suspend=True)
    wait_for_phase(kube, namespace, "held", "Suspended")
    kube.patch(API_VERSION, KIND, "held", {"spec": {"suspend": False}}, namespace=namespace)
    wait_for_phase(kube, namespace, "held", "Succeeded")
    assert storage.stats()["calls"] == 1


def test_deleting_an_object_cancels_it(
    kube: Kube, waiting_operator: OperatorProcess, held_namespace: str, storage: StorageProcess
) -> None:
    namespace = held_namespace
    keys = album_keys(namespace, 400)
    gate = Gate(storage)
    gate.close(after=FIRST_CALLS)
    logged = len(waiting_operator.log_text())
    create_cleanup(kube, namespace, "cancelled", keys, chunkSize=10)
    gate.wait_held()
    kube.delete(API_VERSION, KIND, "cancelled", namespace=namespace)
    # The round stops at its next checkpoint (the write finds the object gone): the calls in flight
    # finish, and nothing further is sent. Kopf says when the object's handler has returned.
    wait_checkpoint_due(len(keys))
    gate.step_until(
        "the object's round to end",
        lambda: "Creation is processed" in waiting_operator.log_text()[logged:],
    )
    stats = storage.stats(summary=True)
    assert (stats["in_flight"], stats["calls"]) == (0, gate.through)  # every call answered; none since
    assert stats["calls"] < len(keys) // 10


def test_the_operator_wide_pause_file(
    kube: Kube, kubeconfig: Path, crd: None, storage: StorageProcess, tmp_path: Path
) -> None:
    pause_file = tmp_path / "paused"
    pause_file.write_text("photos\n")
    operator = OperatorProcess(tmp_path, kubeconfig, operator_config(storage), ["pause-*"])
    operator.start("--pause-file", str(pause_file), "--pause-poll-seconds", "0.5")
    try:
        namespace = kube.create_namespace("pause")
        keys = album_keys(namespace, 20)
        create_cleanup(kube, namespace, "waiting", keys)
        suspended = wait_for_phase(kube, namespace, "waiting", "Suspended")
        assert condition(suspended, "Suspended")["reason"] == "OperatorPaused"
        assert storage.stats()["calls"] == 0
        assert 'filecleanup_paused{storage="photos"} 1.0' in httpx.get(operator.metrics_url, timeout=5).text

        pause_file.write_text("")  # as a ConfigMap edit reaches the pod
        done = wait_for_phase(kube, namespace, "waiting", "Succeeded", timeout=60)
        assert done["status"]["deleted"] == 20
        assert 'filecleanup_paused{storage="photos"} 0.0' in httpx.get(operator.metrics_url, timeout=5).text
    finally:
        operator.stop()
