"""Deletion by prefix against the real API server and an operator process, on the filesystem and on a
real S3-compatible store (SeaweedFS): every key under the prefix goes and nothing outside it, the
listing kept as the run's manifest goes too, and a run killed mid-way resumes with exact counts."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cleanups import create_cleanup, get_cleanup, wait_for_phase
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import DirectoryStorage, SeaweedProcess
from tools.envtest.polling import eventually

KEYS = 100_000


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedProcess]:
    store = SeaweedProcess(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    try:
        yield store
    finally:
        store.stop()


def seed(storage: DirectoryStorage | SeaweedProcess, keys: list[str]) -> None:
    if isinstance(storage, DirectoryStorage):
        storage.seed(keys)
        return
    client = storage.client()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket="photos", Key=key, Body=b"p"), keys))


def operator_for(
    storage: DirectoryStorage | SeaweedProcess, tmp_path: Path, kubeconfig: Path, namespace: str, **extra: Any
) -> OperatorProcess:
    config = {"defaultStorage": "store", "storages": {"store": storage.operator_storage()}, **extra}
    return OperatorProcess(tmp_path, kubeconfig, config, [namespace])


def left_under(storage: DirectoryStorage | SeaweedProcess, prefix: str) -> int:
    if isinstance(storage, DirectoryStorage):
        return sum(1 for path in (storage.root / prefix).rglob("*") if path.is_file())
    pages = storage.client().get_paginator("list_objects_v2").paginate(Bucket="photos", Prefix=prefix)
    return sum(len(page.get("Contents", [])) for page in pages)


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_every_key_under_the_prefix_goes_and_nothing_outside_it(
    *, crd: None, kube: Kube, kubeconfig: Path, bucket: SeaweedProcess, backend: str, tmp_path: Path
) -> None:
    namespace = kube.create_namespace(f"prefix-{backend}")
    storage = DirectoryStorage(tmp_path / "volume") if backend == "filesystem" else bucket
    prefix = f"{namespace}/albums/9/"
    keys = [f"{prefix}{i // 1000:03d}/photo-{i:06d}.jpg" for i in range(KEYS)]
    outside = [f"{namespace}/albums/90/a.jpg", f"{namespace}/albums/9.jpg", f"{namespace}/other/9/b.jpg"]
    seed(storage, keys + outside)
    operator = operator_for(storage, tmp_path, kubeconfig, namespace, chunksInFlightPerObject=8)
    operator.start()
    try:
        started = time.monotonic()
        create_cleanup(kube, namespace, "album-9", [], prefix=prefix, chunkSize=1000)
        done = wait_for_phase(kube, namespace, "album-9", "Succeeded", timeout=600)["status"]
        seconds = time.monotonic() - started
    finally:
        operator.stop()
    assert (done["total"], done["deleted"], done["failed"]) == (KEYS, KEYS, 0)
    assert (done["listing"]["listed"], done["listing"]["skipped"]) == (KEYS, 0)
    assert left_under(storage, prefix) == 0  # the listing and its reports went too
    assert all(storage.exists(key) for key in outside)
    print(f"\nprefix of {KEYS} keys on {backend}: {seconds:.1f} s")  # noqa: T201


def test_a_run_killed_mid_way_resumes_with_exact_counts(
    crd: None, kube: Kube, kubeconfig: Path, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("prefix-kill")
    storage = DirectoryStorage(tmp_path / "volume")
    prefix = f"{namespace}/albums/1/"
    keys = [f"{prefix}{i // 1000:03d}/{i:06d}.jpg" for i in range(KEYS)]
    storage.seed(keys)
    # One call of 50 keys at a time: 2,000 calls, seconds of work, killed after its first checkpoint.
    operator = operator_for(storage, tmp_path, kubeconfig, namespace, chunksInFlightPerObject=1)
    operator.start()
    create_cleanup(kube, namespace, "album-1", [], prefix=prefix, chunkSize=50)

    def under_way() -> dict[str, Any] | None:
        status: dict[str, Any] = get_cleanup(kube, namespace, "album-1").get("status", {})
        return status if status.get("deleted", 0) > 0 else None

    before = eventually("a first checkpoint", under_way, timeout=120, interval=0.05)
    operator.stop(signal.SIGKILL)  # no checkpoint on the way out
    assert before["phase"] == "InProgress" and before["deleted"] < KEYS
    operator.start()
    try:
        done = wait_for_phase(kube, namespace, "album-1", "Succeeded", timeout=600)["status"]
    finally:
        operator.stop()
    assert (done["total"], done["deleted"], done["failed"]) == (KEYS, KEYS, 0)
    assert left_under(storage, prefix) == 0
