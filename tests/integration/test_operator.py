"""The operator as a real process, against the real API server and the reference storage server."""

from __future__ import annotations

import collections
import datetime
import os
import subprocess
import time
from pathlib import Path

from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import MAX_CONCURRENT_REQUESTS
from tests.kube import Kube
from tools.devkit.storages import StorageProcess
from tools.envtest.polling import eventually

FAST_BACKOFF = {"initialSeconds": 1, "maxSeconds": 2}


def condition(obj: dict[str, object], condition_type: str) -> dict[str, str]:
    status = obj["status"]
    assert isinstance(status, dict)
    return next(c for c in status["conditions"] if c["type"] == condition_type)


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)


def test_happy_path_deletes_every_key_once_in_chunks(
    kube: Kube, namespace: str, storage: StorageProcess, kubeconfig: Path
) -> None:
    keys = album_keys(namespace, 250)
    storage.seed(keys)
    create_cleanup(kube, namespace, "album-1", [*keys, keys[0]], chunkSize=100)

    subprocess.run(
        ["kubectl", "wait", "--for=condition=Complete", "fc/album-1", "-n", namespace, "--timeout=60s"],
        check=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
    )
    status = get_cleanup(kube, namespace, "album-1")["status"]
    assert (status["phase"], status["total"], status["deleted"], status["failed"], status["retries"]) == (
        "Succeeded",
        250,
        250,
        0,
        0,
    )
    assert status["observedGeneration"] == 1
    assert not any(storage.exists(key) for key in keys)
    stats = storage.stats()
    assert sorted(stats["chunk_sizes"]) == [50, 100, 100]
    assert set(stats["requested"].values()) == {1}  # the duplicate was sent once
    events = kube.events(namespace, "album-1")
    assert ("Normal", "Completed", "deleted 250 of 250 keys") in events
    table = subprocess.run(
        ["kubectl", "get", "filecleanups", "-n", namespace, "-o", "wide"],
        check=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
    ).stdout.split()
    row = table.index("album-1")  # the header's width depends on the kubectl that prints it
    assert table[:9] == [
        "NAME",
        "PHASE",
        "TOTAL",
        "DELETED",
        "FAILED",
        "RETRIES",
        "AGE",
        "STORAGE",
        "NEXT-RETRY",
    ]
    assert table[row : row + 6] == ["album-1", "Succeeded", "250", "250", "0", "0"]


def test_only_failed_keys_are_retried_and_counts_stay_exact(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 40)
    storage.fault(fail_keys={keys[3]: 1, keys[27]: 2})
    create_cleanup(kube, namespace, "partial", keys, chunkSize=10, backoff=FAST_BACKOFF)

    status = wait_for_phase(kube, namespace, "partial", "Succeeded")["status"]
    assert (status["total"], status["deleted"], status["failed"], status["retries"]) == (40, 40, 0, 2)
    requested = storage.stats()["requested"]
    assert requested[keys[3]] == 2
    assert requested[keys[27]] == 3
    assert sum(requested.values()) == 40 + 1 + 2
    reasons = [reason for _, reason, _ in kube.events(namespace, "partial")]
    assert (reasons.count("RetryScheduled"), reasons.count("Completed")) == (2, 1)


def test_exhausted_retries_end_failed_with_a_warning_and_the_failed_keys(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 20)
    poison = [keys[4], keys[15]]
    storage.fault(fail_keys=dict.fromkeys(poison, -1))
    create_cleanup(
        kube, namespace, "doomed", keys, maxRetries=2, backoff=FAST_BACKOFF, ttlSecondsAfterFinished=1
    )

    failed = wait_for_phase(kube, namespace, "doomed", "Failed")
    status = failed["status"]
    assert (status["total"], status["deleted"], status["failed"], status["retries"]) == (20, 18, 2, 2)
    assert status["failedKeys"] == [
        {"key": key, "error": "injected failure", "attempts": 3} for key in poison
    ]
    assert status["failedKeysOmitted"] == 0
    assert condition(failed, "Failed")["reason"] == "RetriesExhausted"
    warnings = [
        (reason, message) for kind, reason, message in kube.events(namespace, "doomed") if kind == "Warning"
    ]
    assert len(warnings) == 1
    assert warnings[0][0] == "RetriesExhausted"
    assert "2 of 20 keys not deleted after 2 retries" in warnings[0][1]
    assert keys[4] in warnings[0][1]
    time.sleep(2)  # past ttlSecondsAfterFinished: a Failed object stays as the dead-letter record
    assert get_cleanup(kube, namespace, "doomed")["status"]["phase"] == "Failed"


def test_storage_outage_waits_without_using_the_retry_budget(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 30)
    storage.seed(keys)
    storage.stop()
    try:
        create_cleanup(kube, namespace, "patient", keys, maxRetries=0, backoff=FAST_BACKOFF)
        waiting = wait_for_phase(kube, namespace, "patient", "Backoff", timeout=30)
        assert condition(waiting, "Progressing")["reason"] == "StorageUnavailable"
        assert waiting["status"]["retries"] == 0
        assert "nextRetryTime" in waiting["status"]
        time.sleep(4)  # several unavailable rounds; with maxRetries 0 any counted round would fail it
        assert get_cleanup(kube, namespace, "patient")["status"]["phase"] == "Backoff"
    finally:
        storage.start()
    status = wait_for_phase(kube, namespace, "patient", "Succeeded", timeout=30)["status"]
    assert (status["deleted"], status["retries"]) == (30, 0)
    assert not any(storage.exists(key) for key in keys)
    reasons = [reason for _, reason, _ in kube.events(namespace, "patient")]
    assert reasons.count("StorageUnavailable") == 1  # one event per outage, not per try


def test_read_timeout_retries_the_chunk(kube: Kube, namespace: str, storage: StorageProcess) -> None:
    keys = album_keys(namespace, 10)
    storage.fault(hang_calls=1, hang_seconds=2)  # the operator's read timeout is 1 s
    create_cleanup(kube, namespace, "slow", keys, chunkSize=10, backoff=FAST_BACKOFF)

    status = wait_for_phase(kube, namespace, "slow", "Succeeded")["status"]
    assert (status["deleted"], status["retries"]) == (10, 1)
    assert set(storage.stats()["requested"].values()) == {2}


def test_a_throttled_call_is_sent_again_after_retry_after_without_spending_retries(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 5)
    storage.seed(keys)
    storage.fault(statuses=[503, 429], retry_after="1")
    create_cleanup(kube, namespace, "throttled", keys, maxRetries=0)

    done = wait_for_phase(kube, namespace, "throttled", "Succeeded", timeout=30)["status"]
    assert (done["deleted"], done["retries"]) == (5, 0)
    took = parse_time(done["completionTime"]) - parse_time(done["startTime"])
    assert took >= datetime.timedelta(seconds=1)  # two refusals, a second's wait each (to the second)
    assert storage.stats()["requested"] == dict.fromkeys(keys, 3)  # the same call: refused twice, then served
    assert not any(storage.exists(key) for key in keys)
    reasons = [reason for _, reason, _ in kube.events(namespace, "throttled")]
    assert "StorageUnavailable" not in reasons


def test_retry_after_past_the_throttling_bound_is_an_outage_and_honoured(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 5)
    storage.fault(statuses=[503], retry_after="3")
    create_cleanup(kube, namespace, "told", keys, backoff=FAST_BACKOFF)

    waiting = wait_for_phase(kube, namespace, "told", "Backoff", timeout=30)
    since = parse_time(condition(waiting, "Progressing")["lastTransitionTime"])
    next_retry = parse_time(waiting["status"]["nextRetryTime"])
    assert 2.5 <= (next_retry - since).total_seconds() <= 3.5  # FAST_BACKOFF alone would say 1 s
    done = wait_for_phase(kube, namespace, "told", "Succeeded", timeout=30)
    assert parse_time(done["status"]["completionTime"]) >= next_retry - datetime.timedelta(seconds=1)
    assert done["status"]["retries"] == 0


def test_unknown_storage_fails_without_calling_any_storage(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    create_cleanup(kube, namespace, "lost", album_keys(namespace, 3), storage="music")

    failed = wait_for_phase(kube, namespace, "lost", "Failed")
    assert condition(failed, "Failed")["reason"] == "UnknownStorage"
    assert storage.stats()["calls"] == 0
    assert [reason for _, reason, _ in kube.events(namespace, "lost")] == ["UnknownStorage"]


def test_succeeded_object_is_deleted_after_its_ttl(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    create_cleanup(kube, namespace, "brief", album_keys(namespace, 3), ttlSecondsAfterFinished=1)
    wait_for_phase(kube, namespace, "brief", "Succeeded")

    def gone() -> bool:
        names = [
            obj["metadata"]["name"]
            for obj in kube.list_objects("filecleanup.dev/v1alpha1", "FileCleanup", namespace)
        ]
        return "brief" not in names

    eventually("the object to be deleted after its TTL", gone, timeout=30)


def test_many_objects_at_once_share_the_storage_limit(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    storage.fault(latency_seconds=0.02)
    names = [f"album-{i}" for i in range(30)]
    for name in names:
        create_cleanup(kube, namespace, name, album_keys(f"{namespace}/{name}", 50), chunkSize=10)

    for name in names:
        status = wait_for_phase(kube, namespace, name, "Succeeded", timeout=120)["status"]
        assert (status["total"], status["deleted"]) == (50, 50)
    stats = storage.stats()
    assert stats["calls"] == 30 * 5
    assert stats["peak_in_flight"] == MAX_CONCURRENT_REQUESTS  # reached, never passed


def test_ten_thousand_keys_fit_and_complete_with_few_writes(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = [f"{namespace}/albums/{i:05d}/" + "x" * 80 + ".jpg" for i in range(10_000)]
    assert min(len(key) for key in keys) >= 100
    created = create_cleanup(kube, namespace, "huge", keys)
    watcher = kube.watch_revisions(
        "filecleanup.dev/v1alpha1", "FileCleanup", namespace, "huge", created["metadata"]["resourceVersion"]
    )

    done = wait_for_phase(kube, namespace, "huge", "Succeeded", timeout=120)
    status = done["status"]
    assert (status["total"], status["deleted"], status["failed"]) == (10_000, 10_000, 0)
    annotations = done["metadata"].get("annotations", {})
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 1024  # no copy of the keys
    writes = watcher.stop()
    print(f"\n10,000-key object: {writes} writes by the operator from creation to Succeeded")  # noqa: T201
    assert writes <= 10
    assert created["metadata"]["generation"] == 1


def test_keys_are_sent_once_each_per_round(kube: Kube, namespace: str, storage: StorageProcess) -> None:
    keys = album_keys(namespace, 500)
    create_cleanup(kube, namespace, "once", keys, chunkSize=7)
    wait_for_phase(kube, namespace, "once", "Succeeded")
    requested = storage.stats()["requested"]
    assert collections.Counter(requested.values()) == {1: 500}
