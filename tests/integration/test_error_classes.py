"""Retry policy per error class, against the real API server and the reference server: a permanent
error is sent once, maxFailedKeys ends an object early, `filecleanup failed` lists every failed key
with its error, beyond the 100 of status.failedKeys, and a whole-call 5xx is an outage on either
network backend, costing no retry."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.integration.conftest import MAX_CONCURRENT_REQUESTS
from tests.integration.test_kubectl_like_cli import filecleanup
from tests.integration.test_operator import FAST_BACKOFF, condition
from tests.kube import Kube
from tests.storage.fault_proxy import Fault, FaultProxy, s3_error
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import MotoProcess, StorageProcess


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


def s3_deletes(method: str, path: str) -> bool:
    return method == "POST" and path.endswith("?delete")


def test_a_whole_call_500_is_an_outage_on_either_backend_and_costs_no_retry(
    crd: None, kube: Kube, kubeconfig: Path, tmp_path: Path, storage: StorageProcess
) -> None:
    """One reading of a whole-call 5xx for both network backends (storage/transport.py, check_status):
    an outage. With no retry to spend (maxRetries 0), each object waits the outage out and succeeds;
    read as its keys' failure, each would have ended Failed with RetriesExhausted."""
    moto = MotoProcess(tmp_path)
    moto.start()
    proxy = FaultProxy(moto.endpoint).start()
    namespace = kube.create_namespace("outage")
    http_keys, s3_keys = album_keys(f"{namespace}/http", 6), album_keys(f"{namespace}/s3", 6)
    storage.seed(http_keys)
    moto.seed(s3_keys)
    storage.fault(statuses=[500, 502])  # the reference server: refused before it acts
    proxy.fail(  # S3: the first call acted on and its answer lost, the next one refused
        Fault(500, s3_deletes, s3_error("InternalError"), after_acting=True),
        Fault(502, s3_deletes, b"<html>Bad Gateway</html>"),
    )
    timeouts = {"connectTimeoutSeconds": 0.5, "readTimeoutSeconds": 1}
    config = {
        "defaultStorage": "photos",
        "storages": {
            "photos": {**storage.operator_storage(), **timeouts},
            "bucket": {**moto.operator_storage(), "endpoint": proxy.base, **timeouts},
        },
    }
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["outage-*"])
    operator.start()
    try:
        create_cleanup(kube, namespace, "over-http", http_keys, maxRetries=0, backoff=FAST_BACKOFF)
        create_cleanup(
            kube, namespace, "over-s3", s3_keys, storage="bucket", maxRetries=0, backoff=FAST_BACKOFF
        )
        done = {name: wait_for_phase(kube, namespace, name, "Succeeded") for name in ("over-http", "over-s3")}
        left_in_bucket = [key for key in s3_keys if moto.exists(key)]
    finally:
        operator.stop()
        proxy.stop()
        moto.stop()
    for name, keys in (("over-http", http_keys), ("over-s3", s3_keys)):
        status = done[name]["status"]
        assert (status["deleted"], status["failed"], status["retries"]) == (len(keys), 0, 0)
        warnings = [reason for kind, reason, _ in kube.events(namespace, name) if kind == "Warning"]
        assert warnings == ["StorageUnavailable"]  # once per outage
    assert storage.stats()["requested"] == dict.fromkeys(http_keys, 3)  # refused twice, then served
    assert [seen.status for seen in proxy.seen if s3_deletes(seen.method, seen.path)] == [500, 502, 200]
    assert not any(storage.exists(key) for key in http_keys)
    assert left_in_bucket == []
