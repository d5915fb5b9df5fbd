"""Retry policy per error class, against the real API server and the reference server: a permanent
error is sent once, maxFailedKeys ends an object early, and `filecleanup failed` lists every failed
key with its error, beyond the 100 of status.failedKeys."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.integration.conftest import MAX_CONCURRENT_REQUESTS
from tests.integration.test_kubectl_like_cli import filecleanup
from tests.integration.test_operator import FAST_BACKOFF, condition
from tests.kube import Kube
from tests.support.storages import StorageProcess


def test_a_key_with_a_permanent_error_is_sent_once(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 20)
    denied, flaky = keys[4], keys[11]
    storage.seed(keys)
    storage.fault(fail_keys={denied: -1, flaky: 1}, fail_codes={denied: "AccessDenied", flaky: "Busy"})
    create_cleanup(kube, namespace, "denied", keys, chunkSize=5, maxRetries=3, backoff=FAST_BACKOFF)

    failed = wait_for_phase(kube, namespace, "denied", "Failed")
    status = failed["status"]
    assert (status["deleted"], status["failed"], status["retries"]) == (19, 1, 1)
    assert condition(failed, "Failed")["reason"] == "PermanentErrors"
    assert status["permanentIndexes"] == "4"
    assert status["failedErrors"] == [{"error": "AccessDenied: injected failure", "indexes": "4"}]
    requested = storage.stats()["requested"]
    assert (requested[denied], requested[flaky]) == (1, 2)  # the permanent one never again
    assert storage.exists(denied)
    assert not any(storage.exists(key) for key in keys if key != denied)


def test_max_failed_keys_ends_the_object_early(kube: Kube, namespace: str, storage: StorageProcess) -> None:
    keys = album_keys(namespace, 200)
    denied = keys[:3]
    storage.fault(
        fail_keys=dict.fromkeys(denied, -1),
        fail_codes=dict.fromkeys(denied, "AccessDenied"),
        latency_seconds=0.2,
    )
    create_cleanup(kube, namespace, "capped", keys, chunkSize=10, maxFailedKeys=2)

    failed = wait_for_phase(kube, namespace, "capped", "Failed")
    status = failed["status"]
    assert condition(failed, "Failed")["reason"] == "MaxFailedKeysExceeded"
    calls = storage.stats()["calls"]
    # The first chunk held the three keys. The first wave's replies arrive together, in any order: each
    # worker whose reply was recorded before the failing one may have started one more call, never more.
    assert calls <= 2 * MAX_CONCURRENT_REQUESTS - 1 < len(keys) // 10
    assert status["deleted"] == calls * 10 - 3
    assert status["pendingIndexes"]  # never sent
    warnings = [reason for kind, reason, _ in kube.events(namespace, "capped") if kind == "Warning"]
    assert warnings == ["MaxFailedKeysExceeded"]


def test_the_cli_lists_every_failed_key_with_its_error(
    kube: Kube, kubeconfig: Path, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 300)
    denied = keys[::2]  # 150 keys, more than status.failedKeys holds
    codes = {key: "AccessDenied" if i % 3 else "InvalidKey" for i, key in enumerate(denied)}
    storage.fault(fail_keys=dict.fromkeys(denied, -1), fail_codes=codes)
    create_cleanup(kube, namespace, "many", keys, chunkSize=50, maxRetries=0)

    status = wait_for_phase(kube, namespace, "many", "Failed")["status"]
    assert (len(status["failedKeys"]), status["failedKeysOmitted"]) == (100, 50)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    listed = filecleanup("failed", "many", "-n", namespace, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines == [[key, f"{codes[key]}: injected failure"] for key in denied]
