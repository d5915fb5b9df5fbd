"""The native GCS backend through the operator, against fake-gcs-server (Google Cloud Storage's JSON
API, built from its Go module): 10,000 keys from a manifest, and a prefix, with Google's throttling (a
batch refused whole with 429) and per-key failures (503 for some sub-requests of a batch the server
acted on, whose keys are then sent again), which a proxy in front of the emulator answers in Google's
own form, since fake-gcs-server does neither. A key refused with 403 is in tests/unit/test_gcs.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cleanups import create_cleanup, wait_for_phase
from tests.integration.conftest import running_operator
from tests.integration.test_operator import FAST_BACKOFF
from tests.kube import Kube
from tests.storage.fault_proxy import Fault, FaultProxy
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import S3_BUCKET, FakeGcsProcess

KEYS = 10_000
LISTED = [f"albums/1/{i:05d}.jpg" for i in range(KEYS)]
UNDER = [f"albums/2/{i:04d}.jpg" for i in range(1500)]
MANIFEST = "albums/1.manifest.txt"
BATCH = 100
FAILING = 5  # the first sub-requests of one batch, answered 503


def partly_failed_batch() -> bytes:
    """A JSON-API batch reply of BATCH parts: the first FAILING answered 503, the rest 204."""
    parts = [
        f"--batch_x\r\nContent-Type: application/http\r\nContent-ID: <response-{index}>\r\n\r\n"
        f"HTTP/1.1 {503 if index < FAILING else 204} X\r\nContent-Length: 0\r\n\r\n"
        for index in range(BATCH)
    ]
    return ("".join(parts) + "--batch_x--\r\n").encode()


def is_batch(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/batch/storage/v1")


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcsProcess]:
    server = FakeGcsProcess(tmp_path_factory.mktemp("fake-gcs"), preload=LISTED + UNDER)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(gcs: FakeGcsProcess) -> Iterator[FaultProxy]:
    proxy = FaultProxy(gcs.endpoint).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def gcs_operator(
    crd: None,
    kubeconfig: Path,
    gcs: FakeGcsProcess,
    proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    config = {
        "defaultStorage": "gcs",
        "storages": {"gcs": {**gcs.operator_storage(), "endpoint": proxy.base}},
    }
    yield from running_operator(tmp_path_factory.mktemp("gcs-operator"), kubeconfig, config, ["gcs-*"])


def left_under(gcs: FakeGcsProcess, prefix: str) -> int:
    listed = httpx.get(f"{gcs.endpoint}/storage/v1/b/{S3_BUCKET}/o", params={"prefix": prefix}, timeout=30)
    return len(listed.json().get("items", []))


def test_a_manifest_of_ten_thousand_keys_and_a_prefix_go_through_the_json_api(
    kube: Kube, gcs_operator: OperatorProcess, gcs: FakeGcsProcess, proxy: FaultProxy
) -> None:
    namespace = kube.create_namespace("gcs")
    assert left_under(gcs, "albums/1/") == KEYS
    httpx.post(
        f"{gcs.endpoint}/upload/storage/v1/b/{S3_BUCKET}/o",
        params={"uploadType": "media", "name": MANIFEST},
        content="".join(f"{key}\n" for key in LISTED).encode(),
        timeout=30,
    ).raise_for_status()
    proxy.fail(
        Fault(429, is_batch),
        Fault(
            200,
            is_batch,
            partly_failed_batch(),
            after_acting=True,
            headers=(("Content-Type", "multipart/mixed; boundary=batch_x"),),
        ),
    )
    started = time.monotonic()
    create_cleanup(
        kube, namespace, "album-1", [], manifest={"key": MANIFEST}, chunkSize=1000, backoff=FAST_BACKOFF
    )
    create_cleanup(kube, namespace, "album-2", [], prefix="albums/2/", chunkSize=250)
    first = wait_for_phase(kube, namespace, "album-1", "Succeeded", timeout=300)["status"]
    second = wait_for_phase(kube, namespace, "album-2", "Succeeded", timeout=300)["status"]
    print(f"\n{KEYS + len(UNDER)} keys deleted in {time.monotonic() - started:.1f} s")  # noqa: T201
    # The throttled batch spent no retry; the keys answered 503 took one, and were confirmed then.
    assert (first["total"], first["deleted"], first["failed"], first["retries"]) == (KEYS, KEYS, 0, 1)
    injected = [seen.status for seen in proxy.seen if is_batch(seen.method, seen.path) and seen.status != 200]
    assert injected == [429]
    assert (second["total"], second["deleted"], second["listing"]["listed"]) == (1500, 1500, 1500)
    assert left_under(gcs, "albums/1/") == 0
    assert left_under(gcs, "albums/2/") == 0  # the listing went too
    assert gcs.exists(MANIFEST)  # a manifest is the album service's: it stays
