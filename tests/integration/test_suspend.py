"""Suspend and resume, the operator-wide pause, and cancel by deletion: against the real API server and
the reference server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from filecleanup.models import API_VERSION, KIND
from polling import eventually
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.integration.test_operator import condition
from tests.kube import Kube
from tests.support.processes import OperatorProcess
from tests.support.storages import StorageProcess

SLOW_CALL_SECONDS = 0.3  # 40 calls, 4 at a time: a run of about 3 s, long enough to interrupt


def calls_settle(storage: StorageProcess, seconds: float = 1.5) -> int:
    """The storage's call count, once it has stopped moving for ``seconds``."""
    before = int(storage.stats()["calls"])
    while True:
        time.sleep(seconds)
        after = int(storage.stats()["calls"])
        if after == before:
            return after
        before = after


def started(storage: StorageProcess, calls: int = 4) -> Any:
    return eventually("the first calls", lambda: storage.stats()["calls"] >= calls, timeout=30)


def test_suspend_stops_new_calls_and_resume_finishes_from_the_checkpoint(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 400)
    storage.seed(keys)
    storage.fault(latency_seconds=SLOW_CALL_SECONDS)
    create_cleanup(kube, namespace, "paused", keys, chunkSize=10, maxRetries=0)
    started(storage)
    kube.patch(API_VERSION, KIND, "paused", {"spec": {"suspend": True}}, namespace=namespace)

    suspended = wait_for_phase(kube, namespace, "paused", "Suspended")
    assert condition(suspended, "Suspended")["reason"] == "Suspended"
    calls = calls_settle(storage)
    assert calls < len(keys) // 10  # it stopped before the end
    status = get_cleanup(kube, namespace, "paused")["status"]
    assert status["deleted"] == storage.stats()["removed_files"]  # every call in flight recorded
    assert (status["retries"], status["failed"]) == (0, 0)  # no retry budget spent

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


def test_deleting_an_object_cancels_it(kube: Kube, namespace: str, storage: StorageProcess) -> None:
    keys = album_keys(namespace, 400)
    storage.fault(latency_seconds=SLOW_CALL_SECONDS)
    create_cleanup(kube, namespace, "cancelled", keys, chunkSize=10)
    started(storage)
    kube.delete(API_VERSION, KIND, "cancelled", namespace=namespace)
    # The round stops at its next checkpoint (the write finds the object gone): the calls in flight
    # finish, and nothing further is sent.
    assert calls_settle(storage) < len(keys) // 10


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
