"""A grace period (spec.startAfter) against the real API server, the operator and the reference server:
nothing is sent before the time, `filecleanup undo` cancels a waiting object and leaves a started one
alone, and the API server keeps the time as it was given."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.test_kubectl_like_cli import filecleanup
from tests.integration.test_validation import rejection_message
from tests.kube import Kube, Manifest
from tools.devkit.storages import StorageProcess
from tools.envtest.polling import eventually


def start_in(seconds: float) -> datetime.datetime:
    """A whole second at least ``seconds`` from now (the form the client writes)."""
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds + 1)
    return soon.replace(microsecond=0)


def rfc3339(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def wait_for_grace(kube: Kube, namespace: str, name: str) -> Manifest:
    def waiting() -> Manifest | None:
        found = get_cleanup(kube, namespace, name)
        conditions = found.get("status", {}).get("conditions", [])
        return found if any(c["reason"] == "GracePeriod" for c in conditions) else None

    return eventually(f"{namespace}/{name} to wait for its start", waiting, timeout=60, interval=0.1)


def test_nothing_is_sent_before_the_start_and_everything_after_it(
    kube: Kube, namespace: str, storage: StorageProcess
) -> None:
    keys = album_keys(namespace, 20)
    storage.seed(keys)
    start = start_in(4)
    create_cleanup(kube, namespace, "later", keys, chunkSize=5, startAfter=rfc3339(start))
    waiting = wait_for_grace(kube, namespace, "later")
    assert waiting["status"]["phase"] == "Pending"
    assert "startTime" not in waiting["status"]
    done = wait_for_phase(kube, namespace, "later", "Succeeded")["status"]
    assert (done["deleted"], done["total"]) == (20, 20)
    first_sent = storage.stats()["first_requested_at"]
    assert min(first_sent[key] for key in keys) >= start.timestamp()  # the storage's own clock
    assert datetime.datetime.fromisoformat(done["startTime"]) >= start
    reasons = [reason for _, reason, _ in kube.events(namespace, "later")]
    assert reasons[:1] == ["GracePeriod"]


def test_undo_cancels_a_waiting_object_and_leaves_a_started_one_alone(
    kube: Kube, kubeconfig: Path, namespace: str, storage: StorageProcess
) -> None:
    waiting_keys, started_keys = album_keys(f"{namespace}/w", 3), album_keys(f"{namespace}/s", 3)
    storage.seed(waiting_keys + started_keys)
    create_cleanup(kube, namespace, "album-w", waiting_keys, startAfter=rfc3339(start_in(3600)))
    create_cleanup(kube, namespace, "album-s", started_keys)
    wait_for_grace(kube, namespace, "album-w")
    wait_for_phase(kube, namespace, "album-s", "Succeeded")

    undone = filecleanup("--kubeconfig", str(kubeconfig), "undo", "album-w", "-n", namespace)
    assert undone.returncode == 0, undone.stderr
    assert "nothing was sent to the storage, its 3 keys are kept" in undone.stdout
    with pytest.raises(NotFoundError):
        get_cleanup(kube, namespace, "album-w")
    assert all(storage.exists(key) for key in waiting_keys)
    assert not set(waiting_keys) & set(storage.stats()["requested"])

    refused = filecleanup("--kubeconfig", str(kubeconfig), "undo", "album-s", "-n", namespace)
    assert refused.returncode == 2
    assert (
        f"{namespace}/album-s is not waiting for its start (phase Succeeded, 3 of 3 keys deleted): "
        "nothing was undone"
    ) in refused.stderr
    assert get_cleanup(kube, namespace, "album-s")["status"]["phase"] == "Succeeded"


def test_the_start_is_immutable_and_must_name_its_offset(kube: Kube, namespace: str) -> None:
    create_cleanup(kube, namespace, "fixed", ["albums/x/1.jpg"], startAfter="2099-01-01T00:00:00Z")
    with pytest.raises(ApiException) as moved:
        kube.patch(API_VERSION, KIND, "fixed", {"spec": {"startAfter": "2099-02-01T00:00:00Z"}}, namespace)
    assert "startAfter is immutable" in rejection_message(moved.value)
    with pytest.raises(ApiException) as bare:
        create_cleanup(kube, namespace, "bare", ["albums/x/1.jpg"], startAfter="2099-01-01T00:00:00")
    assert "spec.startAfter" in rejection_message(bare.value)


def test_submit_with_a_grace_period_sets_the_start_and_undo_takes_it_back(
    kube: Kube, kubeconfig: Path, namespace: str, storage: StorageProcess, tmp_path: Path
) -> None:
    keys = album_keys(f"{namespace}/g", 2)
    storage.seed(keys)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("".join(f"{key}\n" for key in keys))
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    submitted = filecleanup(
        "--kubeconfig",
        str(kubeconfig),
        "submit",
        "--album",
        "g1",
        "--keys-file",
        str(keys_file),
        "-n",
        namespace,
        "--grace",
        "2d",
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "until then: filecleanup undo NAME" in submitted.stdout
    start = datetime.datetime.fromisoformat(get_cleanup(kube, namespace, "album-g1")["spec"]["startAfter"])
    assert before + datetime.timedelta(days=2) <= start <= before + datetime.timedelta(days=2, seconds=60)
    wait_for_grace(kube, namespace, "album-g1")
    undone = filecleanup("--kubeconfig", str(kubeconfig), "undo", "album-g1", "-n", namespace)
    assert undone.returncode == 0, undone.stderr
    assert all(storage.exists(key) for key in keys)
