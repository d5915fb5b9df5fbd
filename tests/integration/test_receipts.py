"""Erasure receipts against the real API server, an operator process and the reference server: one is
written for each finished object, `filecleanup receipt show` reads it back, and `filecleanup receipt
verify` passes on the receipt as written and fails on one changed by a single byte."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config, running_operator
from tests.integration.test_kubectl_like_cli import filecleanup
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import S3_BUCKET, DirectoryStorage, SeaweedProcess, StorageProcess

PREFIX = "filecleanup-receipts/"


@pytest.fixture(scope="module")
def receipt_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("receipt-key") / "receipt-key"
    key.write_bytes(b"receipts-are-signed-with-this-32-byte-key\n")
    return key


@pytest.fixture(scope="module")
def receipts_operator(
    crd: None,
    kubeconfig: Path,
    storage_process: StorageProcess,
    receipt_key: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """An operator that writes receipts to the reference server, watching the namespaces ``receipts-*``."""
    config = operator_config(storage_process) | {"receipts": {"prefix": PREFIX, "keyFile": str(receipt_key)}}
    yield from running_operator(
        tmp_path_factory.mktemp("receipts-operator"), kubeconfig, config, ["receipts-*"]
    )


def test_each_finished_object_has_a_receipt_that_verifies_and_a_changed_one_does_not(
    kube: Kube,
    receipts_operator: OperatorProcess,
    receipt_key: Path,
    storage: StorageProcess,
    tmp_path: Path,
) -> None:
    namespace = kube.create_namespace("receipts")
    keys = album_keys(namespace, 12)
    storage.seed(keys)
    storage.fault(fail_keys={keys[3]: -1})  # fails every time: the object ends Failed, with a receipt too
    create_cleanup(kube, namespace, "album-ok", keys[6:], labels={"filecleanup.dev/album": "ok"})
    create_cleanup(kube, namespace, "album-bad", keys[:6], maxRetries=0)
    ok = wait_for_phase(kube, namespace, "album-ok", "Succeeded")
    bad = wait_for_phase(kube, namespace, "album-bad", "Failed")

    for obj in (ok, bad):
        place = obj["status"]["receipt"]
        uid = obj["metadata"]["uid"]
        album = "ok" if obj is ok else "-"
        assert place == {
            "storage": "photos",
            "key": f"{PREFIX}{namespace}/{album}/{obj['metadata']['name']}/{uid}.json",
        }
        stored = storage.root / place["key"]
        keys_file = tmp_path / "keys.txt"
        keys_file.write_text("".join(f"{key}\n" for key in (keys[6:] if obj is ok else keys[:6])))
        checked = cli(
            receipts_operator.kubeconfig,
            "receipt",
            "verify",
            str(stored),
            "--key-file",
            str(receipt_key),
            "--keys-file",
            str(keys_file),
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "signature verified, its keys match" in checked.stdout

    shown = cli(
        receipts_operator.kubeconfig,
        "receipt",
        "show",
        "album-bad",
        "-n",
        namespace,
        "--storage-config",
        str(receipts_operator.config_path),
        "--key-file",
        str(receipt_key),
    )
    assert shown.returncode == 0, shown.stderr
    assert "Signature:      verified" in shown.stdout
    assert "Keys:           5 of 6 deleted, 1 failed" in shown.stdout
    assert "Failed:         injected failure (indexes 3)" in shown.stdout

    by_key = cli(
        receipts_operator.kubeconfig,
        "receipt",
        "show",
        "--key",
        ok["status"]["receipt"]["key"],
        "--storage",
        "photos",
        "--storage-config",
        str(receipts_operator.config_path),
        "--key-file",
        str(receipt_key),
        "-o",
        "json",
    )
    assert by_key.returncode == 0, by_key.stderr
    assert json.loads(by_key.stdout)["object"]["album"] == "ok"

    stored = storage.root / ok["status"]["receipt"]["key"]
    data = stored.read_bytes()
    position = data.index(b'"deleted":6') + len(b'"deleted":')
    changed = tmp_path / "changed.json"
    changed.write_bytes(data[:position] + b"7" + data[position + 1 :])
    refused = cli(
        receipts_operator.kubeconfig, "receipt", "verify", str(changed), "--key-file", str(receipt_key)
    )
    assert refused.returncode == 1
    assert "NOT a valid receipt: the signature does not match" in refused.stdout


def test_no_object_deletes_a_receipt(
    kube: Kube, receipts_operator: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("receipts")
    create_cleanup(kube, namespace, "first", album_keys(namespace, 1))
    first = wait_for_phase(kube, namespace, "first", "Succeeded")
    receipt = first["status"]["receipt"]["key"]
    create_cleanup(kube, namespace, "thief", [receipt], maxRetries=0)
    thief = wait_for_phase(kube, namespace, "thief", "Failed")["status"]
    assert "where the operator keeps its erasure receipts" in thief["failedKeys"][0]["error"]
    assert (storage.root / receipt).exists()
    assert receipt not in storage.stats()["requested"]
    assert get_cleanup(kube, namespace, "thief")["status"]["receipt"]["key"].endswith(".json")


def cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return filecleanup("--kubeconfig", str(kubeconfig), *args)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedProcess]:
    store = SeaweedProcess(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.mark.parametrize("backend", ["filesystem", "s3"])
def test_a_receipt_is_kept_on_the_filesystem_and_on_s3(
    *,
    crd: None,
    kube: Kube,
    kubeconfig: Path,
    bucket: SeaweedProcess,
    receipt_key: Path,
    backend: str,
    tmp_path: Path,
) -> None:
    volume = DirectoryStorage(tmp_path / "volume")
    storage = volume if backend == "filesystem" else bucket
    config = {
        "defaultStorage": backend,
        "storages": {backend: storage.operator_storage()},
        "receipts": {"prefix": PREFIX, "keyFile": str(receipt_key)},
    }
    namespace = kube.create_namespace(f"receipts-{backend}")
    keys = album_keys(namespace, 5)
    storage.seed(keys)
    operator = OperatorProcess(tmp_path, kubeconfig, config, [namespace])
    operator.start()
    try:
        create_cleanup(kube, namespace, "album-7", keys)
        done = wait_for_phase(kube, namespace, "album-7", "Succeeded")["status"]
    finally:
        operator.stop()
    assert not any(storage.exists(key) for key in keys)
    key = done["receipt"]["key"]
    if backend == "filesystem":
        stored = volume.root / key
    else:
        stored = tmp_path / "receipt.json"
        stored.write_bytes(bucket.client().get_object(Bucket=S3_BUCKET, Key=key)["Body"].read())
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("".join(f"{key}\n" for key in keys))
    checked = cli(
        kubeconfig,
        "receipt",
        "verify",
        str(stored),
        "--key-file",
        str(receipt_key),
        "--keys-file",
        str(keys_file),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
