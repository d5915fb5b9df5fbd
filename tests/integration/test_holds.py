"""Keys the storage holds (S3 Object Lock: a legal hold, a retention) against a real S3-compatible store,
SeaweedFS, with the real API server and an operator process: such a key is neither retried each round
nor failed for good; the object waits in phase Held until the earliest retention is over, then sends
the held keys again."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cleanups import create_cleanup, get_cleanup, wait_for_phase
from tests.integration.conftest import running_operator
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import S3_BUCKET, SeaweedProcess
from tools.envtest.polling import eventually

RETAINED_SECONDS = 15  # long enough for the first round to end while the retention holds


@pytest.fixture(scope="module")
def locked_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedProcess]:
    store = SeaweedProcess(tmp_path_factory.mktemp("seaweedfs"), object_lock=True)
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="module")
def holds_operator(
    crd: None, kubeconfig: Path, locked_store: SeaweedProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    locked = locked_store.operator_storage()
    bypassing = {**locked, "bypassGovernanceRetention": True}
    config = {"defaultStorage": "locked", "storages": {"locked": locked, "bypassing": bypassing}}
    yield from running_operator(tmp_path_factory.mktemp("holds-operator"), kubeconfig, config, ["holds-*"])


def version_of(store: SeaweedProcess, key: str) -> str:
    (version,) = store.versions(key)
    return version


def failed_errors(status: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["error"] for item in status["failedKeys"]}


def test_held_keys_wait_in_phase_held_and_go_once_their_retention_is_over(
    kube: Kube, holds_operator: OperatorProcess, locked_store: SeaweedProcess
) -> None:
    namespace = kube.create_namespace("holds")
    legal, retained, free = (f"{namespace}/{name}.jpg" for name in ("legal", "retained", "free"))
    locked_store.seed([legal, retained, free])
    s3 = locked_store.client()
    s3.put_object_legal_hold(
        Bucket=S3_BUCKET, Key=legal, VersionId=version_of(locked_store, legal), LegalHold={"Status": "ON"}
    )
    until = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=RETAINED_SECONDS)).replace(
        microsecond=0
    )
    s3.put_object_retention(
        Bucket=S3_BUCKET,
        Key=retained,
        VersionId=version_of(locked_store, retained),
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
    )

    create_cleanup(kube, namespace, "album-held", [legal, retained, free], maxRetries=1)
    first = wait_for_phase(kube, namespace, "album-held", "Held")["status"]
    assert (first["deleted"], first["failed"], first["retries"]) == (1, 2, 0)  # no retry spent on them
    stamp = f"{until:%Y-%m-%dT%H:%M:%SZ}"
    assert failed_errors(first) == {
        legal: "held: legal hold",
        retained: f"held: COMPLIANCE retention until {stamp}",
    }
    assert datetime.datetime.fromisoformat(first["nextRetryTime"]) <= until + datetime.timedelta(seconds=1)
    assert locked_store.versions(free) == []  # every version of it is gone
    assert locked_store.versions(legal) and locked_store.versions(retained)

    def retention_over() -> dict[str, Any] | None:
        status: dict[str, Any] = get_cleanup(kube, namespace, "album-held")["status"]
        return status if status["phase"] == "Held" and status["deleted"] == 2 else None

    second = eventually("the retained key to go once its retention is over", retention_over, timeout=120)
    assert failed_errors(second) == {legal: "held: legal hold"}  # a legal hold has no end: a day
    assert datetime.datetime.fromisoformat(second["nextRetryTime"]) > until + datetime.timedelta(hours=23)
    assert locked_store.versions(retained) == []
    assert locked_store.versions(legal)


def test_a_governance_retention_holds_unless_the_storage_may_bypass_it(
    kube: Kube, holds_operator: OperatorProcess, locked_store: SeaweedProcess
) -> None:
    namespace = kube.create_namespace("holds")
    kept, bypassed = f"{namespace}/kept.jpg", f"{namespace}/bypassed.jpg"
    locked_store.seed([kept, bypassed])
    until = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).replace(microsecond=0)
    for key in (kept, bypassed):
        locked_store.client().put_object_retention(
            Bucket=S3_BUCKET,
            Key=key,
            VersionId=version_of(locked_store, key),
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
        )
    create_cleanup(kube, namespace, "album-kept", [kept])
    create_cleanup(kube, namespace, "album-bypassed", [bypassed], storage="bypassing")
    held = wait_for_phase(kube, namespace, "album-kept", "Held")["status"]
    assert failed_errors(held) == {kept: f"held: GOVERNANCE retention until {until:%Y-%m-%dT%H:%M:%SZ}"}
    wait_for_phase(kube, namespace, "album-bypassed", "Succeeded")
    assert locked_store.versions(bypassed) == []
    assert locked_store.versions(kept)
