"""Dry runs (spec.dryRun) against the real API server, the reference server (its /exists extension,
the storage's dryRunUrl) and the filesystem backend: the counts are right, nothing is deleted, and the
checks keep to the storage's rate limit key by key."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.integration.test_operator import condition, parse_time
from tests.integration.test_validation import rejection_message
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import DirectoryStorage, StorageProcess
from tools.envtest.polling import eventually

PACED_CALLS_PER_SECOND = 10


@pytest.fixture
def volume(tmp_path: Path) -> DirectoryStorage:
    return DirectoryStorage(tmp_path / "volume")


@pytest.fixture
def dry_run_operator(
    kube: Kube, kubeconfig: Path, crd: None, storage: StorageProcess, volume: DirectoryStorage
) -> Iterator[str]:
    """An operator with four storages on the reference server (with and without dryRunUrl, one whose
    policy allows only the namespace's prefix, and one with a rate limit of calls) and one filesystem
    storage; yields a namespace it watches."""
    http = storage.operator_storage()
    config = {
        "defaultStorage": "photos",
        "storages": {
            "photos": {**http, "dryRunUrl": f"{storage.base}/exists"},
            "plain": http,
            "strict": {**http, "policy": {"allowedNamespaces": "*", "keyPrefix": "{namespace}/"}},
            "paced": {
                **http,
                "dryRunUrl": f"{storage.base}/exists",
                "rateLimit": {"callsPerSecond": PACED_CALLS_PER_SECOND},
            },
            "volume": volume.operator_storage(),
        },
    }
    operator = OperatorProcess(volume.root.parent, kubeconfig, config, ["dry-*"])
    operator.start()
    try:
        yield kube.create_namespace("dry")
    finally:
        operator.stop()


def dry_run_of(kube: Kube, namespace: str, name: str, keys: list[str], **spec: object) -> dict[str, object]:
    create_cleanup(kube, namespace, name, keys, dryRun=True, chunkSize=10, **spec)
    done = wait_for_phase(kube, namespace, name, "Checked")
    assert condition(done, "Ready")["reason"] == "DryRun"
    assert "Complete" not in {c["type"] for c in done["status"]["conditions"]}
    status: dict[str, object] = done["status"]
    assert (status["total"], status["deleted"], status["failed"]) == (len(set(keys)), 0, 0)
    # Kopf posts events in the background: the status can be read before its event is.
    events = eventually("the DryRun event", lambda: kube.events(namespace, name))
    assert [(kind, reason) for kind, reason, _ in events] == [("Normal", "DryRun")]
    assert "nothing was deleted" in events[0][2]
    return status


def test_a_dry_run_on_the_http_storage_counts_and_deletes_nothing(
    kube: Kube, dry_run_operator: str, storage: StorageProcess
) -> None:
    namespace = dry_run_operator
    keys = album_keys(namespace, 45)
    storage.seed(keys[:30])
    status = dry_run_of(kube, namespace, "http", [*keys, keys[0]])  # a duplicate counts once
    assert status["dryRun"] == {"wouldDelete": 30, "missing": 15, "forbidden": 0, "unknown": 0}
    stats = storage.stats()
    assert (stats["calls"], stats["removed_files"]) == (0, 0)  # not one delete call
    assert stats["exists_calls"] == 5  # chunks of 10
    assert all(storage.exists(key) for key in keys[:30])


def test_without_dry_run_url_every_key_is_unknown(
    kube: Kube, dry_run_operator: str, storage: StorageProcess
) -> None:
    keys = album_keys(dry_run_operator, 12)
    storage.seed(keys)
    status = dry_run_of(kube, dry_run_operator, "plain", keys, storage="plain")
    assert status["dryRun"] == {"wouldDelete": 0, "missing": 0, "forbidden": 0, "unknown": 12}
    stats = storage.stats()
    assert (stats["calls"], stats["exists_calls"], stats["removed_files"]) == (0, 0, 0)
    assert all(storage.exists(key) for key in keys)


def test_a_dry_runs_checks_count_against_calls_per_second_key_by_key(
    kube: Kube, dry_run_operator: str, storage: StorageProcess
) -> None:
    """A check of 10 keys takes 10 call tokens (on S3 it is a HeadObject per key): 60 keys at 10 a
    second, the bucket's first second's worth at once, take at least 5 s, however they are sent."""
    keys = album_keys(dry_run_operator, 60)
    storage.seed(keys)
    status = dry_run_of(kube, dry_run_operator, "paced", keys, storage="paced")
    assert status["dryRun"] == {"wouldDelete": 60, "missing": 0, "forbidden": 0, "unknown": 0}
    stats = storage.stats()
    assert (stats["exists_calls"], stats["exists_keys"]) == (6, 60)  # chunks of 10
    took = parse_time(str(status["completionTime"])) - parse_time(str(status["startTime"]))
    # A lower bound, the operator's own waits (a slow machine can only lengthen them): the tokens past
    # the bucket's second's worth, less a second of slack.
    beyond_the_burst = (len(keys) - PACED_CALLS_PER_SECOND) / PACED_CALLS_PER_SECOND
    assert took >= datetime.timedelta(seconds=beyond_the_burst - 1)


def test_a_dry_run_on_the_filesystem_storage_counts_and_deletes_nothing(
    kube: Kube, dry_run_operator: str, volume: DirectoryStorage
) -> None:
    keys = album_keys("albums/7", 25)
    volume.seed(keys[:20])
    (volume.root / "albums" / "7" / "linked").symlink_to(volume.root / "albums")
    (volume.root / "albums" / "7" / "folder").mkdir()
    refused = ["albums/7/linked/photo-00000.jpg", "albums/7/folder"]  # a delete would refuse both
    status = dry_run_of(kube, dry_run_operator, "files", [*keys, *refused], storage="volume")
    assert status["dryRun"] == {"wouldDelete": 20, "missing": 5, "forbidden": 2, "unknown": 0}
    assert all(volume.exists(key) for key in keys[:20])
    assert (volume.root / "albums" / "7" / "folder").is_dir()


def test_a_dry_run_outside_the_policy_fails_as_the_real_run_would(
    kube: Kube, dry_run_operator: str, storage: StorageProcess
) -> None:
    keys = [*album_keys(dry_run_operator, 3), "elsewhere/photo.jpg"]
    storage.seed(keys)
    create_cleanup(kube, dry_run_operator, "outside", keys, dryRun=True, storage="strict")
    failed = wait_for_phase(kube, dry_run_operator, "outside", "Failed")
    assert condition(failed, "Failed")["reason"] == "Forbidden"
    assert "1 key is outside" in condition(failed, "Failed")["message"]
    assert storage.stats()["exists_calls"] == 0
    assert all(storage.exists(key) for key in keys)


def test_dry_run_is_immutable_and_not_for_manifests(kube: Kube, dry_run_operator: str) -> None:
    create_cleanup(kube, dry_run_operator, "fixed", ["a/1.jpg"], dryRun=True, suspend=True)
    with pytest.raises(ApiException) as changed:
        kube.patch(API_VERSION, KIND, "fixed", {"spec": {"dryRun": False}}, namespace=dry_run_operator)
    assert "dryRun is immutable" in rejection_message(changed.value)
    with pytest.raises(ApiException) as manifest:
        create_cleanup(kube, dry_run_operator, "listed", [], manifest={"key": "m.txt"}, dryRun=True)
    assert "dryRun is not supported with a manifest" in rejection_message(manifest.value)


def test_a_storage_that_lies_about_deleting_is_caught_by_a_dry_run_afterwards(
    kube: Kube, dry_run_operator: str, storage: StorageProcess
) -> None:
    """A storage that confirms deletions it did not do cannot be told from an honest one by its reply;
    a dry run of the same keys afterwards asks it again, key by key, and shows what is still there."""
    namespace = dry_run_operator
    keys = album_keys(namespace, 12)
    storage.seed(keys)
    storage.fault(lie=True)
    create_cleanup(kube, namespace, "believed", keys, chunkSize=5)
    believed = wait_for_phase(kube, namespace, "believed", "Succeeded")["status"]
    assert (believed["deleted"], believed["failed"]) == (12, 0)  # as the storage said
    storage.fault()
    status = dry_run_of(kube, namespace, "verified", keys)
    assert status["dryRun"] == {"wouldDelete": 12, "missing": 0, "forbidden": 0, "unknown": 0}
