"""The native GCS backend through the operator, against fake-gcs-server (Google Cloud Storage's JSON
API, built from its Go module): 10,000 keys from a manifest, and a prefix. What the emulator cannot show
(a key refused with 403, a 429 or 503 for one key, a throttled batch) is in tests/unit/test_gcs.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cleanups import create_cleanup, wait_for_phase
from tests.integration.conftest import running_operator
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import S3_BUCKET, FakeGcsProcess

KEYS = 10_000
LISTED = [f"albums/1/{i:05d}.jpg" for i in range(KEYS)]
UNDER = [f"albums/2/{i:04d}.jpg" for i in range(1500)]
MANIFEST = "albums/1.manifest.txt"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcsProcess]:
    server = FakeGcsProcess(tmp_path_factory.mktemp("fake-gcs"), preload=LISTED + UNDER)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gcs_operator(
    crd: None, kubeconfig: Path, gcs: FakeGcsProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    config = {"defaultStorage": "gcs", "storages": {"gcs": gcs.operator_storage()}}
    yield from running_operator(tmp_path_factory.mktemp("gcs-operator"), kubeconfig, config, ["gcs-*"])


def left_under(gcs: FakeGcsProcess, prefix: str) -> int:
    listed = httpx.get(f"{gcs.endpoint}/storage/v1/b/{S3_BUCKET}/o", params={"prefix": prefix}, timeout=30)
    return len(listed.json().get("items", []))


def test_a_manifest_of_ten_thousand_keys_and_a_prefix_go_through_the_json_api(
    kube: Kube, gcs_operator: OperatorProcess, gcs: FakeGcsProcess
) -> None:
    namespace = kube.create_namespace("gcs")
    assert left_under(gcs, "albums/1/") == KEYS
    httpx.post(
        f"{gcs.endpoint}/upload/storage/v1/b/{S3_BUCKET}/o",
        params={"uploadType": "media", "name": MANIFEST},
        content="".join(f"{key}\n" for key in LISTED).encode(),
        timeout=30,
    ).raise_for_status()
    started = time.monotonic()
    create_cleanup(kube, namespace, "album-1", [], manifest={"key": MANIFEST}, chunkSize=1000)
    create_cleanup(kube, namespace, "album-2", [], prefix="albums/2/", chunkSize=250)
    first = wait_for_phase(kube, namespace, "album-1", "Succeeded", timeout=300)["status"]
    second = wait_for_phase(kube, namespace, "album-2", "Succeeded", timeout=300)["status"]
    print(f"\n{KEYS + len(UNDER)} keys deleted in {time.monotonic() - started:.1f} s")  # noqa: T201
    assert (first["total"], first["deleted"], first["failed"]) == (KEYS, KEYS, 0)
    assert (second["total"], second["deleted"], second["listing"]["listed"]) == (1500, 1500, 1500)
    assert left_under(gcs, "albums/1/") == 0
    assert left_under(gcs, "albums/2/") == 0  # the listing went too
    assert left_under(gcs, MANIFEST) == 1  # a manifest is the album service's: it stays
