"""The native Azure Blob backend through the operator, against Azurite (Microsoft's Azure Storage
emulator, from npm): 10,000 keys from a manifest (one in five of them a blob: a missing blob counts as
deleted) and a prefix of two listing pages, with per-key failures (blobs with snapshots) and Azure's
throttling (503 ServerBusy and 500 OperationTimedOut, for a whole batch and for every sub-request of
one), which a proxy in front of Azurite answers in Azure's own form, since Azurite never throttles.
What Azurite cannot show at all (held blobs, Entra ID tokens) is in tests/unit/test_azureblob.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cleanups import create_cleanup, wait_for_phase
from tests.integration.conftest import running_operator
from tests.integration.test_operator import FAST_BACKOFF, condition
from tests.kube import Kube
from tests.storage.fault_proxy import Fault, FaultProxy
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import AZURITE_ACCOUNT, S3_BUCKET, AzuriteProcess

KEYS = 10_000
LISTED = [f"albums/1/{i:05d}.jpg" for i in range(KEYS)]
UNDER = [f"albums/2/{i:04d}.jpg" for i in range(5_200)]  # List Blobs answers 5,000 a page
PRESENT = LISTED[::5]
WITH_SNAPSHOTS = PRESENT[17::600]  # 4 blobs
MANIFEST = "albums/1.manifest.txt"
BATCH = 256


def throttled_batch(count: int) -> bytes:
    """A Blob Batch reply in which every sub-request was refused with 503 ServerBusy."""
    parts = [
        f"--batchresponse_t\r\nContent-Type: application/http\r\nContent-ID: {index}\r\n\r\n"
        "HTTP/1.1 503 The server is busy.\r\nx-ms-error-code: ServerBusy\r\n\r\n"
        for index in range(count)
    ]
    return ("".join(parts) + "--batchresponse_t--\r\n").encode()


def is_batch(method: str, path: str) -> bool:
    return method == "POST" and "comp=batch" in path


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteProcess]:
    server = AzuriteProcess(tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(azurite: AzuriteProcess) -> Iterator[FaultProxy]:
    proxy = FaultProxy(f"http://127.0.0.1:{azurite.port}").start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def azure_operator(
    crd: None,
    kubeconfig: Path,
    azurite: AzuriteProcess,
    proxy: FaultProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    storage = {
        **azurite.operator_storage(),
        "endpoint": f"{proxy.base}/{AZURITE_ACCOUNT}",
        # Azurite is one Node.js thread, and a delete there scans every blob it holds: a batch of 256
        # takes seconds while it holds several thousand. More calls in flight would only queue there.
        "maxConcurrentRequests": 2,
        "readTimeoutSeconds": 120,
    }
    config = {"defaultStorage": "azure", "storages": {"azure": storage}}
    yield from running_operator(tmp_path_factory.mktemp("azure-operator"), kubeconfig, config, ["azure-*"])


def left_under(azurite: AzuriteProcess, prefix: str) -> int:
    left, marker = 0, ""
    while True:
        query = {
            "restype": "container",
            "comp": "list",
            "prefix": prefix,
            **({"marker": marker} if marker else {}),
        }
        page = azurite.call("GET", f"/{S3_BUCKET}", query)
        page.raise_for_status()
        left += page.text.count("<Blob>")
        marker = page.text.partition("<NextMarker>")[2].partition("</NextMarker>")[0]
        if not marker:
            return left


def test_ten_thousand_keys_from_a_manifest_and_a_prefix_through_blob_batch(
    kube: Kube, azure_operator: OperatorProcess, azurite: AzuriteProcess, proxy: FaultProxy
) -> None:
    namespace = kube.create_namespace("azure")
    azurite.seed(PRESENT + UNDER)
    for key in WITH_SNAPSHOTS:
        azurite.snapshot(key)
    manifest = "".join(f"{key}\n" for key in LISTED).encode()
    azurite.call("PUT", f"/{S3_BUCKET}/{MANIFEST}", headers={"x-ms-blob-type": "BlockBlob"}, content=manifest)
    proxy.fail(
        Fault(503, is_batch, b"", headers=(("x-ms-error-code", "ServerBusy"),)),
        Fault(
            202,
            is_batch,
            throttled_batch(BATCH),
            headers=(("Content-Type", "multipart/mixed; boundary=batchresponse_t"),),
        ),
        Fault(500, is_batch, b"", headers=(("x-ms-error-code", "OperationTimedOut"),)),
    )

    started = time.monotonic()
    create_cleanup(
        kube,
        namespace,
        "album-1",
        [],
        manifest={"key": MANIFEST},
        chunkSize=BATCH,
        maxRetries=1,
        backoff=FAST_BACKOFF,
    )
    create_cleanup(kube, namespace, "album-2", [], prefix="albums/2/", chunkSize=1_000)
    first = wait_for_phase(kube, namespace, "album-1", "Failed", timeout=300)
    second = wait_for_phase(kube, namespace, "album-2", "Succeeded", timeout=300)["status"]
    print(f"\n{KEYS + len(UNDER)} keys through Blob Batch in {time.monotonic() - started:.1f} s")  # noqa: T201

    status = first["status"]
    # Only the blobs with snapshots failed: no throttled call failed a key, or spent a retry.
    assert (status["total"], status["deleted"], status["failed"], status["retries"]) == (KEYS, KEYS - 4, 4, 1)
    assert condition(first, "Failed")["reason"] == "RetriesExhausted"
    assert (second["total"], second["deleted"], second["listing"]["listed"]) == (5_200, 5_200, 5_200)
    throttled = [
        seen.status for seen in proxy.seen if is_batch(seen.method, seen.path) and not seen.forwarded
    ]
    assert sorted(throttled) == [202, 500, 503]
    assert left_under(azurite, "albums/1/") == 4  # the blobs with snapshots keep their data
    assert all(azurite.exists(key) for key in WITH_SNAPSHOTS)
    assert left_under(azurite, "albums/2/") == 0
    assert azurite.exists(MANIFEST)  # a manifest is the album service's: it stays
