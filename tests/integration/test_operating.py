"""Operating the operator safely: the namespace-to-storage policy, secrets kept out of sight, metrics,
deadlines and graceful shutdown."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from filecleanup.api.indexes import parse_ranges
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import MAX_CONCURRENT_REQUESTS, operator_config
from tests.kube import Kube, Manifest
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import HELD_READ_TIMEOUT_SECONDS, Gate, StorageProcess
from tools.envtest.polling import eventually


def condition(obj: Manifest, condition_type: str) -> dict[str, str]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == condition_type)


def test_policy_forbids_other_namespaces_and_keys_outside_the_prefix_before_any_call(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    allowed, other = kube.create_namespace("policy"), kube.create_namespace("policy")
    config = operator_config(storage)
    config["storages"]["photos"]["policy"] = {
        "allowedNamespaces": [allowed],
        "keyPrefix": "tenants/{namespace}/",
    }
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["policy-*"])
    own = [f"tenants/{allowed}/photo-{i}.jpg" for i in range(5)]
    storage.seed([*own, f"tenants/{other}/theirs.jpg"])
    operator.start()
    try:
        create_cleanup(kube, allowed, "mine", own)
        create_cleanup(kube, allowed, "sneaky", [*own[:2], f"tenants/{other}/theirs.jpg"])
        create_cleanup(kube, other, "elsewhere", [f"tenants/{other}/theirs.jpg"])
        wait_for_phase(kube, allowed, "mine", "Succeeded")
        sneaky = wait_for_phase(kube, allowed, "sneaky", "Failed")
        elsewhere = wait_for_phase(kube, other, "elsewhere", "Failed")
    finally:
        operator.stop()

    assert condition(sneaky, "Failed")["reason"] == "Forbidden"
    assert f"1 key is outside 'tenants/{allowed}/'" in condition(sneaky, "Failed")["message"]
    assert condition(elsewhere, "Failed")["message"] == f"namespace '{other}' may not use storage 'photos'"
    requested = storage.stats()["requested"]
    assert set(requested) == set(own)  # only the allowed object's keys reached the storage, once each
    assert storage.exists(f"tenants/{other}/theirs.jpg")
    assert [(kind, reason) for kind, reason, _ in kube.events(other, "elsewhere")] == [
        ("Warning", "Forbidden")
    ]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_are_served_and_count_the_work(
    operator: OperatorProcess, kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    before = scrape(operator.metrics_url)
    storage.fault(fail_keys={f"{namespace}/photo-00003.jpg": 1})
    create_cleanup(
        kube,
        namespace,
        "measured",
        album_keys(namespace, 25),
        chunkSize=10,
        backoff={"initialSeconds": 1, "maxSeconds": 1},
    )
    wait_for_phase(kube, namespace, "measured", "Succeeded")
    time.sleep(0.5)  # the watch event of the final status reaches the phase gauge
    after = scrape(operator.metrics_url)
    photos = (("storage", "photos"),)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = photos) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert grew("filecleanup_keys_deleted_total") == 25
    assert grew("filecleanup_keys_failed_total") == 1
    assert grew("filecleanup_retry_rounds_total") == 1
    assert (
        grew(
            "filecleanup_delete_call_duration_seconds_count", (("outcome", "deleted"), ("storage", "photos"))
        )
        == 3
    )
    assert (
        grew(
            "filecleanup_delete_call_duration_seconds_count", (("outcome", "partial"), ("storage", "photos"))
        )
        == 1
    )
    assert after[("filecleanup_delete_calls_in_flight", photos)] == 0
    assert after[("filecleanup_storage_available", photos)] == 1
    # A finished object is counted by the sweeper's census (every sweepIntervalSeconds, 10 s), not
    # from the watch: it may not be counted yet, in particular when no test before made one.
    eventually(
        "the census to count a Succeeded object",
        lambda: scrape(operator.metrics_url)[("filecleanup_objects", (("phase", "Succeeded"),))] >= 1,
        timeout=30,
    )


def test_active_deadline_fails_the_object(kube: Kube, namespace: str, storage: StorageProcess) -> None:
    keys = album_keys(namespace, 4)
    storage.fault(fail_keys={keys[0]: -1})
    create_cleanup(
        kube,
        namespace,
        "late",
        keys,
        maxRetries=100,
        activeDeadlineSeconds=3,
        backoff={"initialSeconds": 1, "maxSeconds": 1},
    )
    failed = wait_for_phase(kube, namespace, "late", "Failed", timeout=30)
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    started = failed["status"]["startTime"]
    finished = failed["status"]["completionTime"]
    assert started < finished
    assert failed["status"]["deleted"] == 3
    # Kopf posts events in the background: the status can be read before its event is.
    eventually(
        "the DeadlineExceeded event",
        lambda: (
            ("Warning", "DeadlineExceeded")
            in [(kind, reason) for kind, reason, _ in kube.events(namespace, "late")]
        ),
    )


def test_sigterm_records_every_confirmed_deletion(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("graceful")
    config = operator_config(storage)
    config["storages"]["photos"]["readTimeoutSeconds"] = HELD_READ_TIMEOUT_SECONDS
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["graceful-*"])
    keys = album_keys(namespace, 200)
    storage.seed(keys)
    gate = Gate(storage)
    gate.close(after=4)
    operator.start()
    create_cleanup(kube, namespace, "interrupted", keys, chunkSize=10)
    # Four calls answered, and as many in flight as the operator sends at once (its adaptive limit
    # grows from two by one a success, up to maxConcurrentRequests), held at the storage at the signal.
    gate.wait_held(MAX_CONCURRENT_REQUESTS)
    stopping = time.monotonic()
    assert operator.process is not None
    operator.process.send_signal(signal.SIGTERM)
    eventually("the operator to stop", lambda: "Operator is stopping" in operator.log_text(), interval=0.05)
    gate.open()  # the calls in flight are answered while the operator stops
    exit_code = operator.process.wait(timeout=30)
    stopped_in = time.monotonic() - stopping

    status = get_cleanup(kube, namespace, "interrupted")["status"]
    removed = storage.stats()["removed_files"]
    assert exit_code == 0
    assert stopped_in < 5  # the calls in flight and one checkpoint, well within a grace period
    assert removed >= 10 * (4 + MAX_CONCURRENT_REQUESTS)  # the calls in flight at the signal were answered...
    assert status["deleted"] == removed  # ...and every confirmed deletion is in status
    pending = {keys[i] for i in parse_ranges(status["pendingIndexes"], len(keys))}
    assert not any(storage.exists(key) for key in set(keys) - pending)
    print(f"\nSIGTERM: stopped in {stopped_in:.1f} s; {removed} deletions confirmed and all recorded")  # noqa: T201

    sent_before = storage.stats()["requested"]
    operator.start()
    try:
        done = wait_for_phase(kube, namespace, "interrupted", "Succeeded", timeout=60)["status"]
    finally:
        operator.stop()
    assert (done["deleted"], done["total"]) == (200, 200)
    sent_after = storage.stats()["requested"]
    assert all(sent_after[key] == sent_before[key] for key in set(keys) - pending)  # not sent again


def test_sigterm_with_a_call_that_outlives_the_shutdown_timeout_still_exits_in_time(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("graceful")
    config = operator_config(storage)
    config["storages"]["photos"]["readTimeoutSeconds"] = 60  # the storage may take a minute per call
    # All four chunks at once: the adaptive limit starts at 2 and grows only as calls succeed, and no
    # call succeeds here.
    config["storages"]["photos"]["adaptiveConcurrency"]["initialRequests"] = 4
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["graceful-*"])
    keys = album_keys(namespace, 20)
    storage.seed(keys)
    gate = Gate(storage)
    gate.close()  # no reply comes until the operator has exited: far longer than the shutdown timeout
    operator.start("--shutdown-timeout", "2")
    try:
        create_cleanup(kube, namespace, "slow", keys, chunkSize=5)
        gate.wait_held(4)
        stopping = time.monotonic()
        assert operator.process is not None
        operator.process.send_signal(signal.SIGTERM)
        exit_code = operator.process.wait(timeout=30)
        stopped_in = time.monotonic() - stopping
    finally:
        operator.stop()  # a test that failed before its SIGTERM leaves no operator behind
        gate.open()
    status = get_cleanup(kube, namespace, "slow")["status"]
    assert exit_code == 0
    assert 2 <= stopped_in < 2 + 5 + 2  # the shutdown timeout, then at most the last checkpoint's bound
    assert status["deleted"] == 0  # no reply came: nothing is counted...
    assert len(parse_ranges(status["pendingIndexes"], len(keys))) == 20  # ...and every key is still to send
