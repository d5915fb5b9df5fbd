"""The album-service client and the filecleanup CLI against the real API server and operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from filecleanup.album.client import FileCleanupClient, SubmitConflict
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube, Manifest
from tools.devkit.storages import StorageProcess
from tools.envtest.polling import eventually


def cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filecleanup.album.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )


async def test_resubmitting_the_same_album_is_idempotent(
    cleanup_client: FileCleanupClient, kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 30)
    first = await cleanup_client.submit("17", keys, namespace=namespace)
    again = await cleanup_client.submit("17", [*reversed(keys[:0]), *keys], namespace=namespace)
    assert first == again == ["album-17"]
    wait_for_phase(kube, namespace, "album-17", "Succeeded")
    assert await cleanup_client.submit("17", keys, namespace=namespace) == ["album-17"]  # even when finished
    assert len(await cleanup_client.list_cleanups(namespace=namespace)) == 1
    assert sum(storage.stats()["requested"].values()) == 30


async def test_resubmitting_other_keys_for_an_album_is_a_conflict(
    cleanup_client: FileCleanupClient, kube: Kube, namespace: str
) -> None:
    await cleanup_client.submit("18", ["albums/18/a.jpg"], namespace=namespace)
    with pytest.raises(SubmitConflict, match="exists with other keys"):
        await cleanup_client.submit("18", ["albums/18/b.jpg"], namespace=namespace)
    # Done before the next test: the shared storage's counts, reset for it, must not see this key.
    wait_for_phase(kube, namespace, "album-18", "Succeeded")


async def test_a_big_album_is_split_and_its_status_aggregated(
    cleanup_client: FileCleanupClient, kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 25_000)
    names = await cleanup_client.submit("big", keys, namespace=namespace)
    assert names == ["album-big-0", "album-big-1", "album-big-2"]
    for name in names:
        wait_for_phase(kube, namespace, name, "Succeeded", timeout=120)
    album = await cleanup_client.status("big", namespace=namespace)
    assert (album.phase, album.total, album.deleted, album.failed, album.parts) == (
        "Succeeded",
        25_000,
        25_000,
        0,
        3,
    )
    assert [summary.total for summary in album.objects] == [10_000, 10_000, 5_000]
    assert len(storage.stats()["requested"]) == 25_000


def test_cli_submit_and_status(kubeconfig: Path, kube: Kube, namespace: str, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(album_keys(namespace, 12)) + "\n\n")
    submitted = cli(
        kubeconfig, "submit", "--album", "42", "--keys-file", str(keys_file), "--namespace", namespace
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "album 42: 12 keys in 1 FileCleanup: album-42" in submitted.stdout
    wait_for_phase(kube, namespace, "album-42", "Succeeded")

    shown = cli(kubeconfig, "status", "--album", "42", "--namespace", namespace)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "ALBUM",
        "PHASE",
        "PROGRESS",
        "TOTAL",
        "DELETED",
        "FAILED",
        "RETRIES",
        "REDRIVES",
    ]
    assert lines[1].split() == ["album-42", "42", "Succeeded", "100%", "12", "12", "0", "0", "0"]
    assert "album 42: Succeeded, 12 of 12 keys deleted, 0 failed, 1 of 1 part found" in shown.stdout

    listed = cli(kubeconfig, "status", "--all-namespaces")
    assert any(line.split()[:2] == [namespace, "album-42"] for line in listed.stdout.splitlines())


def test_cli_puts_a_big_album_in_a_manifest(
    kubeconfig: Path, kube: Kube, namespace: str, storage: StorageProcess, tmp_path: Path
) -> None:
    keys = album_keys(namespace, 12_000)
    storage.seed(keys[::100])
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    config = tmp_path / "operator.yaml"
    config.write_text(json.dumps(operator_config(storage)))
    args = ["submit", "--album", "huge", "--keys-file", str(keys_file), "-n", namespace]
    submitted = cli(kubeconfig, *args, "--storage-config", str(config))
    assert submitted.returncode == 0, submitted.stderr
    assert "12000 keys in 1 FileCleanup: album-huge" in submitted.stdout
    obj = get_cleanup(kube, namespace, "album-huge")
    assert "keys" not in obj["spec"]
    manifest = obj["spec"]["manifest"]["key"]
    assert manifest.startswith(f"{namespace}/")
    assert (storage.root / manifest).read_text().splitlines() == keys
    done = wait_for_phase(kube, namespace, "album-huge", "Succeeded", timeout=120)
    assert (done["status"]["total"], done["status"]["deleted"]) == (12_000, 12_000)
    assert not any(storage.exists(key) for key in keys[::100])
    again = cli(kubeconfig, *args, "--storage-config", str(config))
    assert again.returncode == 0, again.stderr  # the same manifest, the same object
    assert get_cleanup(kube, namespace, "album-huge")["metadata"]["generation"] == 1


def test_cli_manifest_needs_a_storage_that_holds_objects(
    kubeconfig: Path, namespace: str, storage: StorageProcess, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(album_keys(namespace, 10_001)))
    config = tmp_path / "operator.yaml"
    plain = {**storage.operator_storage()}
    del plain["objectsUrl"]
    config.write_text(json.dumps({"defaultStorage": "photos", "storages": {"photos": plain}}))
    args = ["submit", "--album", "x", "--keys-file", str(keys_file), "-n", namespace, "--storage-config"]
    refused = cli(kubeconfig, *args, str(config))
    assert refused.returncode == 2
    assert "storage 'photos' cannot hold manifests" in refused.stderr
    unknown = cli(kubeconfig, *args, str(config), "--storage", "videos")
    assert unknown.returncode == 2
    assert "no storage 'videos'" in unknown.stderr
    assert "Traceback" not in refused.stderr + unknown.stderr


def test_cli_errors_are_clear(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    bad_album = cli(kubeconfig, "submit", "--album", "a/b", "--keys-file", "-", "--namespace", namespace)
    assert bad_album.returncode == 2
    assert "album id 'a/b' must be" in bad_album.stderr
    missing = cli(kubeconfig, "submit", "--album", "1", "--keys-file", str(tmp_path / "absent.txt"))
    assert missing.returncode == 2
    assert "absent.txt" in missing.stderr
    unknown = cli(kubeconfig, "retry", "album-none", "--namespace", namespace)
    assert unknown.returncode == 2
    assert f'"album-none" not found in namespace {namespace}' in unknown.stderr  # as kubectl says it
    assert "Traceback" not in bad_album.stderr + missing.stderr + unknown.stderr


def test_redrive_sends_only_the_failed_keys_again(
    kubeconfig: Path, kube: Kube, namespace: str, storage: StorageProcess, tmp_path: Path
) -> None:
    keys = album_keys(namespace, 20)
    poison = [keys[2], keys[13]]
    storage.fault(fail_keys=dict.fromkeys(poison, -1))
    # A short budget, set at creation: maxRetries and backoff cannot change later.
    create_cleanup(
        kube, namespace, "album-5", keys, maxRetries=1, backoff={"initialSeconds": 1, "maxSeconds": 1}
    )
    failed = wait_for_phase(kube, namespace, "album-5", "Failed", timeout=60)["status"]
    assert (failed["deleted"], failed["failed"]) == (18, 2)

    refused = cli(kubeconfig, "retry", "album-5", "-n", namespace)  # storage still failing: fine, it retries
    assert refused.returncode == 0, refused.stderr
    wait_for_phase(kube, namespace, "album-5", "Failed", timeout=60)  # failed again, budget used again
    storage.fault()  # the storage is fixed
    before = storage.stats()["requested"]
    assert cli(kubeconfig, "retry", "album-5", "-n", namespace).returncode == 0

    def redriven_and_done() -> Manifest | None:
        found = get_cleanup(kube, namespace, "album-5")
        status = found.get("status", {})
        return found if status.get("phase") == "Succeeded" and status.get("redrives") == 2 else None

    status = eventually("the second redrive to succeed", redriven_and_done, timeout=60)["status"]
    assert (status["total"], status["deleted"], status["failed"], status["retries"]) == (20, 20, 0, 0)
    after = storage.stats()["requested"]
    assert {key for key in after if after[key] != before.get(key)} == set(poison)  # only the failed keys
    assert all(after[key] == 1 for key in keys if key not in poison)
    reasons = [reason for _, reason, _ in kube.events(namespace, "album-5")]
    assert (reasons.count("Redriven"), reasons.count("RetriesExhausted"), reasons.count("Completed")) == (
        2,
        2,
        1,
    )

    not_failed = cli(kubeconfig, "retry", "album-5", "-n", namespace)
    assert not_failed.returncode == 2
    assert "only a Failed FileCleanup can be retried" in not_failed.stderr


def test_submit_keeps_keys_exactly_as_written(
    kubeconfig: Path, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    # A trailing and a leading space, U+2028 and U+0085: all valid in a key, all changed by strip()
    # or splitlines(); and a Windows line end.
    tricky = [
        f"{namespace}/trailing ",
        f"{namespace}/line\u2028sep",
        f"{namespace}/next\u0085line",
        f" {namespace}/lead",
    ]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_bytes(("\r\n".join(tricky) + "\r\n").encode())
    result = cli(kubeconfig, "submit", "--album", "tricky", "--keys-file", str(keys_file), "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert get_cleanup(kube, namespace, "album-tricky")["spec"]["keys"] == tricky
