"""handlers.py run by Kopf inside the test process: the command line's own run in a background thread
(tests/support/kopf_thread.py), against the suite's API server and the reference storage server. Each
test observes the objects through the API server, and reads the operator's Runtime where a process
would hide it (its metrics).

Each test has its own operator, watching only a namespace of its own (not ``it-*``, which the suite's
operator process watches), and stops it at its end: the test fails if the run raised, or left a
task, a thread or a server behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from filecleanup.api.models import API_VERSION, KIND
from filecleanup.controller.runtime import Runtime
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube
from tests.support.kopf_thread import OperatorThread
from tools.devkit.storages import StorageProcess
from tools.envtest.polling import eventually

OTHER_INSTALLATION = "example.com/another-installation"


@pytest.fixture
def watched(crd: None, kube: Kube) -> str:
    """The namespace the in-process operator watches."""
    return kube.create_namespace("inproc")


@pytest.fixture
def operator_thread(
    kubeconfig: Path, storage: StorageProcess, watched: str, tmp_path: Path
) -> Iterator[OperatorThread]:
    config = tmp_path / "operator-config.yaml"
    key_file = tmp_path / "report-key"
    key_file.write_text("in-process-report-key-" + "0" * 32)  # as the chart does: a key of its own
    config.write_text(yaml.safe_dump({**operator_config(storage), "reportKeyFile": str(key_file)}))
    with OperatorThread(kubeconfig, config, ["--namespace", watched]) as running:
        yield running


@pytest.fixture
def runtime(operator_thread: OperatorThread) -> Runtime:
    return operator_thread.runtime


def reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    return [reason for _, reason, _ in kube.events(namespace, name)]


def test_a_new_object_is_handled_to_succeeded(
    kube: Kube, watched: str, storage: StorageProcess, runtime: Runtime
) -> None:
    assert runtime.opened is not None  # the startup handler opened its clients into this memo
    keys = album_keys(watched, 12)
    storage.seed(keys)
    create_cleanup(kube, watched, "album", keys, chunkSize=5)

    status = wait_for_phase(kube, watched, "album", "Succeeded")["status"]
    assert (status["total"], status["deleted"], status["failed"], status["retries"]) == (12, 12, 0, 0)
    assert not any(storage.exists(key) for key in keys)
    assert sorted(storage.stats()["chunk_sizes"]) == [2, 5, 5]
    # Kopf posts events from a queue of its own, after the handler's status write.
    completed = eventually(
        "the Completed event",
        lambda: [event for event in kube.events(watched, "album") if event[1] == "Completed"],
    )
    assert completed == [("Normal", "Completed", "deleted 12 of 12 keys")]


def test_an_object_of_another_installation_is_left_untouched(
    kube: Kube, watched: str, storage: StorageProcess, runtime: Runtime
) -> None:
    theirs = album_keys(f"{watched}/theirs", 4)
    ours = album_keys(f"{watched}/ours", 4)
    storage.seed([*theirs, *ours])
    other = create_cleanup(kube, watched, "theirs", theirs, managedBy=OTHER_INSTALLATION)
    # Created after it on the same watch stream: once this one is done, the operator has seen both.
    create_cleanup(kube, watched, "ours", ours)

    wait_for_phase(kube, watched, "ours", "Succeeded")
    eventually("the Completed event of ours", lambda: "Completed" in reasons(kube, watched, "ours"))
    untouched = get_cleanup(kube, watched, "theirs")
    assert "status" not in untouched
    assert not (untouched["metadata"].get("annotations") or {})  # no diff-base: Kopf did not handle it
    assert untouched["metadata"]["resourceVersion"] == other["metadata"]["resourceVersion"]
    assert kube.events(watched, "theirs") == []
    assert all(storage.exists(key) for key in theirs)
    assert set(storage.stats()["requested"]) == set(ours)
    # Nor did the phase counter count it (its filter is the handler's).
    assert runtime.metrics.objects.stored_bytes_of(other["metadata"]["uid"]) is None


@pytest.mark.usefixtures("operator_thread")
def test_setting_suspend_back_to_false_resumes_an_object_created_suspended(
    kube: Kube, watched: str, storage: StorageProcess
) -> None:
    keys = album_keys(watched, 6)
    storage.seed(keys)
    create_cleanup(kube, watched, "held", keys, suspend=True)

    suspended = wait_for_phase(kube, watched, "held", "Suspended")
    assert suspended["status"]["deleted"] == 0
    assert storage.stats()["calls"] == 0
    assert all(storage.exists(key) for key in keys)

    kube.patch(API_VERSION, KIND, "held", {"spec": {"suspend": False}}, namespace=watched)
    done = wait_for_phase(kube, watched, "held", "Succeeded")
    assert (done["status"]["deleted"], done["status"]["observedGeneration"]) == (6, 2)
    assert not any(storage.exists(key) for key in keys)
    assert storage.stats()["calls"] == 1
    eventually("the Completed event", lambda: "Completed" in reasons(kube, watched, "held"))


def test_the_phase_metric_counts_the_object(
    kube: Kube, watched: str, storage: StorageProcess, runtime: Runtime
) -> None:
    registry = runtime.metrics.registry

    def objects(phase: str) -> float | None:
        return registry.get_sample_value("filecleanup_objects", {"phase": phase})

    keys = album_keys(watched, 3)
    storage.seed(keys)
    created = create_cleanup(kube, watched, "counted", keys, suspend=True)
    uid = created["metadata"]["uid"]

    wait_for_phase(kube, watched, "counted", "Suspended")
    eventually("the object counted as Suspended", lambda: objects("Suspended") == 1)
    stored = runtime.metrics.objects.stored_bytes_of(uid)
    assert stored is not None
    assert stored > 0
    assert registry.get_sample_value("filecleanup_stored_bytes", {"phase": "Suspended"}) == stored
    assert objects("Pending") == 0

    # Finished, it leaves the count of objects at work (the sweeper's census counts finished ones).
    kube.patch(API_VERSION, KIND, "counted", {"spec": {"suspend": False}}, namespace=watched)
    wait_for_phase(kube, watched, "counted", "Succeeded")
    eventually("the object no longer counted as Suspended", lambda: objects("Suspended") == 0)
    assert runtime.metrics.objects.stored_bytes_of(uid) is None
