"""Re-checks after Succeeded against the real API server, an operator process and the reference server:
a storage that confirmed deletions it did not make is caught by the first re-check, which counts the
keys, names them and deletes them again; the object is kept and watched until its last re-check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config, running_operator
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import Gate, StorageProcess
from tools.envtest.polling import eventually


@pytest.fixture(scope="module")
def rechecking_operator(
    crd: None, kubeconfig: Path, storage_process: StorageProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    config = operator_config(storage_process)
    photos = config["storages"]["photos"]
    photos["dryRunUrl"] = storage_process.url.removesuffix("delete") + "exists"
    photos["verify"] = {"afterSeconds": [2, 4]}
    photos["readTimeoutSeconds"] = 60  # the re-check's delete waits at the gate
    yield from running_operator(
        tmp_path_factory.mktemp("recheck-operator"), kubeconfig, config, ["recheck-*"]
    )


def verification(kube: Kube, namespace: str, done: int) -> dict[str, Any] | None:
    found: dict[str, Any] = (
        get_cleanup(kube, namespace, "album-back").get("status", {}).get("verification") or {}
    )
    return found if found.get("done") == done else None


def test_keys_a_storage_kept_are_found_by_a_recheck_counted_and_deleted_again(
    kube: Kube, rechecking_operator: OperatorProcess, storage: StorageProcess
) -> None:
    namespace = kube.create_namespace("recheck")
    keys = album_keys(namespace, 3)
    storage.seed(keys)
    gate = Gate(storage, lie=True)  # "deleted", says the storage, and deletes nothing
    gate.close(after=1)  # the object's one call goes; the re-check's delete waits
    create_cleanup(kube, namespace, "album-back", keys)
    done = wait_for_phase(kube, namespace, "album-back", "Succeeded")
    assert done["status"]["deleted"] == 3
    assert done["metadata"]["labels"]["filecleanup.dev/phase"] == "Verifying"
    assert all(storage.exists(key) for key in keys)  # the storage lied

    gate.wait_held(held=1)  # the first re-check found them, and deletes them again
    storage.fault()  # an honest storage from here on: the held call goes
    first = eventually("the first re-check", lambda: verification(kube, namespace, 1), timeout=60)
    assert (first["resurrected"], first["resurrectedKeys"]) == (3, sorted(keys))
    assert first["last"].startswith("re-check 1 of 2: 3 of 3 keys were found again")
    assert not any(storage.exists(key) for key in keys)
    reasons = [reason for _, reason, _ in kube.events(namespace, "album-back")]
    assert "Resurrected" in reasons

    last = eventually("the last re-check", lambda: verification(kube, namespace, 2), timeout=60)
    assert last["last"] == "re-check 2 of 2: none of the 3 keys was found again"
    assert "nextTime" not in last

    def hidden() -> bool:
        labels = get_cleanup(kube, namespace, "album-back")["metadata"].get("labels") or {}
        return labels.get("filecleanup.dev/phase") == "Succeeded"

    assert eventually("the object to leave the watch", hidden, timeout=30)
