"""Deletions too big for an object: the keys live in a manifest in the storage itself, the object only
points to it and stays a few KB; progress is an offset, failures go to a report next to the manifest."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from filecleanup.api.models import API_VERSION, KIND
from filecleanup.run.manifests import parse_intervals
from tests.cleanups import (
    album_keys,
    checkpoint_at_gate,
    create_cleanup,
    get_cleanup,
    wait_checkpoint_due,
    wait_for_phase,
)
from tests.integration.test_operator import condition
from tests.integration.test_suspend import FIRST_CALLS, suspended_at_gate
from tests.kube import Kube, Manifest
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import (
    HELD_READ_TIMEOUT_SECONDS,
    DirectoryStorage,
    Gate,
    MotoProcess,
    StorageProcess,
)
from tools.envtest.polling import eventually

MAX_OBJECT_BYTES = 10 * 1024
CHUNKS_IN_FLIGHT = 4  # the operator's chunksInFlightPerObject
FIRST_WAVE = 2  # a fresh operator's calls in flight on the storage before any is answered


@pytest.fixture
def volume(tmp_path: Path) -> DirectoryStorage:
    return DirectoryStorage(tmp_path / "volume")


@pytest.fixture
def manifest_operator(  # noqa: PLR0917  (fixtures)
    crd: None,
    kubeconfig: Path,
    storage: StorageProcess,
    moto: MotoProcess,
    volume: DirectoryStorage,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    config = {
        "defaultStorage": "photos",
        "chunksInFlightPerObject": CHUNKS_IN_FLIGHT,
        "storages": {
            "photos": {
                **storage.operator_storage(),
                "readTimeoutSeconds": HELD_READ_TIMEOUT_SECONDS,
                "adaptiveConcurrency": {"initialRequests": FIRST_WAVE},
            },
            "bucket": moto.operator_storage(),
            "volume": volume.operator_storage(),
        },
    }
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["manifest-*"])
    operator.start()
    yield operator
    operator.stop()


def put(storage: StorageProcess, key: str, data: bytes) -> None:
    httpx.put(f"{storage.base}/objects/{key}", content=data, timeout=30).raise_for_status()


def write_manifest(where: str, key: str, keys: list[str], stores: dict[str, Any]) -> None:
    data = "".join(f"{k}\n" for k in keys).encode()
    match where:
        case "photos":
            put(stores["photos"], key, data)
        case "bucket":
            stores["bucket"].client().put_object(Bucket="photos", Key=key, Body=data)
        case _:
            path = stores["volume"].root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def size_of(obj: Manifest) -> int:
    return len(json.dumps({k: v for k, v in obj.items() if k != "metadata"}))


@pytest.mark.parametrize("where", ["photos", "bucket", "volume"])
def test_a_manifest_deletion_completes_on_every_storage_with_a_small_object(  # noqa: PLR0917  (fixtures)
    kube: Kube,
    manifest_operator: OperatorProcess,
    storage: StorageProcess,
    moto: MotoProcess,
    volume: DirectoryStorage,
    where: str,
) -> None:
    namespace = kube.create_namespace("manifest")
    keys = album_keys(f"{namespace}/{where}", 3000)
    stores: dict[str, Any] = {"photos": storage, "bucket": moto, "volume": volume}
    seeded = keys[::30]  # a hundred of them exist
    stores[where].seed(seeded)
    write_manifest(where, f"{namespace}/{where}/manifest.txt", keys, stores)
    create_cleanup(
        kube, namespace, "big", [], storage=where, manifest={"key": f"{namespace}/{where}/manifest.txt"}
    )
    done = wait_for_phase(kube, namespace, "big", "Succeeded", timeout=120)
    status = done["status"]
    assert (status["total"], status["deleted"], status["failed"]) == (3000, 3000, 0)
    assert not any(stores[where].exists(key) for key in seeded)
    assert size_of(done) < MAX_OBJECT_BYTES
    assert status["manifest"]["checked"] and status["manifest"]["round"] == 0


def test_one_key_outside_the_policy_and_nothing_is_deleted(
    kube: Kube, manifest_operator: OperatorProcess, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("manifest")
    keys = album_keys(namespace, 500)
    storage.seed(keys)
    put(
        storage,
        f"{namespace}/manifest.txt",
        "".join(f"{k}\n" for k in [*keys, "other-team/theirs.jpg"]).encode(),
    )
    # The policy of this operator's storage is open, so the key rules show it: a '..' segment.
    put(storage, f"{namespace}/bad.txt", "".join(f"{k}\n" for k in [*keys, f"{namespace}/../x.jpg"]).encode())
    create_cleanup(kube, namespace, "escape", [], manifest={"key": f"{namespace}/bad.txt"})
    failed = wait_for_phase(kube, namespace, "escape", "Failed")["status"]
    reason = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert reason["reason"] == "Forbidden"
    assert "line 501: a key must not contain a '..' path segment" in reason["message"]
    assert storage.stats()["calls"] == 0
    assert all(storage.exists(key) for key in keys)


def test_failed_keys_go_to_a_report_that_the_next_round_reads(
    kube: Kube, manifest_operator: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("manifest")
    keys = album_keys(namespace, 1000)
    flaky, stuck = keys[10], keys[900]
    storage.fault(fail_keys={flaky: 1, stuck: -1})
    put(storage, f"{namespace}/m.txt", "".join(f"{k}\n" for k in keys).encode())
    retry = {"initialSeconds": 1, "maxSeconds": 1}
    create_cleanup(
        kube, namespace, "retried", [], manifest={"key": f"{namespace}/m.txt"}, maxRetries=2, backoff=retry
    )
    failed = wait_for_phase(kube, namespace, "retried", "Failed", timeout=60)["status"]
    assert (failed["total"], failed["deleted"], failed["failed"], failed["retries"]) == (1000, 999, 1, 2)
    assert failed["failedKeys"] == [{"key": stuck, "error": "injected failure", "attempts": 3}]
    report = failed["manifest"]["report"]
    assert report == f"{namespace}/m.txt.report/{namespace}/retried/round-0002/"
    segment = httpx.get(f"{storage.base}/objects/{report}00000", timeout=10).text
    key, signature, error = segment.removesuffix("\n").split("\t")  # every failed key, signed, with its error
    assert (key, len(signature), error) == (stuck, 32, "injected failure")
    requested = storage.stats()["requested"]
    assert requested[flaky] == 2 and requested[stuck] == 3
    assert sum(requested.values()) == 1000 + 1 + 2  # the retry rounds sent only the failed keys


def test_a_missing_manifest_fails_the_object(kube: Kube, manifest_operator: OperatorProcess) -> None:
    namespace = kube.create_namespace("manifest")
    create_cleanup(kube, namespace, "nowhere", [], manifest={"key": f"{namespace}/missing.txt"})
    failed = wait_for_phase(kube, namespace, "nowhere", "Failed")["status"]
    assert next(c for c in failed["conditions"] if c["type"] == "Failed")["reason"] == "ManifestMissing"


def test_a_killed_operator_resumes_a_manifest_exactly(
    kube: Kube, manifest_operator: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("manifest")
    keys = album_keys(namespace, 20_000)
    storage.seed(keys[::10])
    data = "".join(f"{k}\n" for k in keys).encode()
    put(storage, f"{namespace}/m.txt", data)
    first = 40  # calls of 100 keys: then every call waits at the storage
    gate = Gate(storage)
    gate.close(after=first)
    create_cleanup(kube, namespace, "resumed", [], manifest={"key": f"{namespace}/m.txt"})
    gate.wait_held()
    checkpoint_at_gate(kube, namespace, "resumed", gate, beyond=100 * first, total_keys=None)
    manifest_operator.stop(signal.SIGKILL)
    checkpoint = get_cleanup(kube, namespace, "resumed")["status"]
    sent_before_restart = storage.stats()["requested"]
    gate.open()
    manifest_operator.start()
    done = wait_for_phase(kube, namespace, "resumed", "Succeeded", timeout=120)["status"]
    assert (done["total"], done["deleted"], done["failed"]) == (20_000, 20_000, 0)
    # A checkpoint halfway, made while the round was held: past the first calls, within those let through.
    assert 100 * first < checkpoint["deleted"] <= 100 * gate.through < 15_000
    # What the checkpoint counted as done: the lines before its offset, and those in its done ranges.
    offset, ranges = checkpoint["manifest"]["offset"], parse_intervals(checkpoint["manifest"]["done"])
    starts, position = [], 0
    for key in keys:
        starts.append(position)
        position += len(key.encode()) + 1
    confirmed = [
        k for k, s in zip(keys, starts, strict=True) if s < offset or any(a <= s < b for a, b in ranges)
    ]
    assert len(confirmed) == checkpoint["deleted"]
    requested = storage.stats()["requested"]
    assert all(requested[key] == 1 for key in confirmed)  # nothing confirmed at the checkpoint was sent again
    # ...and everything sent before the kill but not confirmed was sent again, once.
    assert sum(requested.values()) - len(keys) == sum(sent_before_restart.values()) - checkpoint["deleted"]
    assert not any(storage.exists(key) for key in keys[::10])


def test_max_failed_keys_ends_a_manifest_round_early(
    kube: Kube, manifest_operator: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("manifest")
    keys = album_keys(namespace, 200)
    denied = keys[:3]
    gate = Gate(
        storage, fail_keys=dict.fromkeys(denied, -1), fail_codes=dict.fromkeys(denied, "AccessDenied")
    )
    gate.close()  # every call waits at the storage
    put(storage, f"{namespace}/m.txt", "".join(f"{k}\n" for k in keys).encode())
    create_cleanup(
        kube, namespace, "capped", [], manifest={"key": f"{namespace}/m.txt"}, chunkSize=10, maxFailedKeys=2
    )
    gate.wait("the first calls held", lambda counts: counts["held"] == FIRST_WAVE)
    # The first chunk, with the three keys, is answered first, once a checkpoint is due: that reply's
    # checkpoint shows it recorded, and the round stopped, before any other call is answered.
    wait_checkpoint_due(None)
    gate.let_keys_through(denied)

    def recorded() -> Manifest | None:
        found = get_cleanup(kube, namespace, "capped")
        return found if (found["status"].get("manifest") or {}).get("permanentNow") else None

    first = eventually("the failing reply recorded", recorded, timeout=60)["status"]
    assert (first["deleted"], first["manifest"]["permanentNow"]) == (7, 3)  # that reply alone
    gate.open()
    failed = wait_for_phase(kube, namespace, "capped", "Failed")
    reason = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert reason["reason"] == "MaxFailedKeysExceeded"
    assert f"{namespace}/m.txt.report/{namespace}/capped/round-0000/" in reason["message"]
    stats = storage.stats()
    calls = stats["calls"]
    # No call was answered before the failing one: each worker sent its first call at most, and the
    # calls sent by then (the first ones, and those the failing reply's ramp-up let start) were all
    # recorded. Only the first chunks were sent, each once.
    assert FIRST_WAVE <= calls <= CHUNKS_IN_FLIGHT
    assert stats["requested"] == dict.fromkeys(keys[: calls * 10], 1)
    status = failed["status"]
    assert status["manifest"]["permanentNow"] == 3
    assert status["deleted"] == calls * 10 - 3


def test_a_suspended_manifest_round_stops_and_resumes_where_it_stood(
    kube: Kube, manifest_operator: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("manifest")
    keys = album_keys(namespace, 1000)
    storage.seed(keys)
    gate = Gate(storage)
    gate.close(after=FIRST_CALLS)
    put(storage, f"{namespace}/m.txt", "".join(f"{k}\n" for k in keys).encode())
    create_cleanup(kube, namespace, "held", [], manifest={"key": f"{namespace}/m.txt"}, chunkSize=10)
    gate.wait_held()

    held = suspended_at_gate(kube, namespace, "held", gate, None)
    assert condition(held, "Suspended")["reason"] == "Suspended"
    stats = storage.stats()
    calls = stats["calls"]
    assert (stats["in_flight"], calls) == (0, gate.through)  # every call answered; none since
    assert calls < len(keys) // 10  # it stopped before the end
    status = get_cleanup(kube, namespace, "held")["status"]
    assert status["deleted"] == stats["removed_files"] == 10 * calls  # every call in flight recorded
    assert storage.stats(summary=True)["calls"] == calls  # a suspended object sends nothing

    gate.open()
    kube.patch(API_VERSION, KIND, "held", {"spec": {"suspend": False}}, namespace=namespace)
    done = wait_for_phase(kube, namespace, "held", "Succeeded", timeout=120)["status"]
    assert (done["total"], done["deleted"], done["failed"], done["retries"]) == (1000, 1000, 0, 0)
    assert storage.stats()["requested"] == dict.fromkeys(keys, 1)  # resumed where it stood
