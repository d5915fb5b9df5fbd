"""Storages we do not control, behaving as badly as a peer can: every reply ends in a classified result,
no call holds its slot for ever, no reply exhausts memory, no secret reaches a log, an event or status,
and every other object still completes. Each test below reproduces a finding of issue 12."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from filecleanup.api.config import FilesystemStorageConfig, S3StorageConfig
from filecleanup.api.metrics import Metrics
from filecleanup.storage import StorageUnavailable
from filecleanup.storage.base import ChunkResult, ConcurrencyLimited
from filecleanup.storage.filesystem import FilesystemStorage
from filecleanup.storage.http import HttpStorage
from filecleanup.storage.limits import Limiter
from filecleanup.storage.opening import open_storage
from filecleanup.storage.s3 import DELETE_MARKER_ONLY
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.kube import Kube, Manifest
from tests.storage_fixtures import RunningServer, http_backend, storage_server
from tools.devkit.gates import OPEN_GATE
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import OPEN_POLICY, S3_BUCKET, MotoProcess, SeaweedProcess, StorageProcess
from tools.envtest.polling import eventually

__all__ = ["storage_server"]
CHART_MEMORY_LIMIT = 256 * 2**20


@pytest.fixture
async def http(storage_server: RunningServer) -> AsyncIterator[HttpStorage]:
    storage = http_backend(storage_server.url, connectTimeoutSeconds=0.5, readTimeoutSeconds=1)
    yield storage
    await storage.aclose()


@pytest.mark.parametrize("undeclared", [False, True], ids=["content-length", "chunked"])
async def test_a_huge_reply_is_cut_off_not_read_whole(
    storage_server: RunningServer, http: HttpStorage, undeclared: bool
) -> None:
    storage_server.fault(huge_reply_bytes=200 * 2**20, huge_reply_undeclared=undeclared)
    started = time.monotonic()
    result = await http.delete(["a/1.jpg", "a/2.jpg"])
    assert result.whole_call_failed
    assert result.failed["a/1.jpg"].startswith("the reply is larger than ")
    assert time.monotonic() - started < 2  # refused at the limit (or its Content-Length), not after 200 MiB


async def test_a_trickled_reply_ends_at_the_overall_deadline_and_frees_its_slot(
    storage_server: RunningServer, http: HttpStorage
) -> None:
    storage_server.seed(["a/1.jpg"])
    storage_server.fault(trickle_seconds=0.5)  # within every read timeout, never within the deadline
    limited = ConcurrencyLimited(http, Limiter(1), metrics=Metrics())
    started = time.monotonic()
    result = await limited.delete(["a/1.jpg"], gate=OPEN_GATE)
    elapsed = time.monotonic() - started
    assert result.failed == {"a/1.jpg": "no complete reply within 1.5 s: outcome unknown"}
    assert elapsed < 2.5
    storage_server.fault()
    second = await asyncio.wait_for(
        limited.delete(["a/1.jpg"], gate=OPEN_GATE), timeout=5
    )  # the slot was freed
    assert second.deleted == {"a/1.jpg"}


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"bad_encoding": True}, "the reply is compressed, which was not asked for"),
        ({"not_json": True}, "the reply breaks the contract: json_invalid at the body"),
        ({"huge_header_bytes": 200_000}, "the call failed (RemoteProtocolError): outcome unknown"),
    ],
)
async def test_mangled_replies_fail_the_chunk_with_a_classified_reason(
    storage_server: RunningServer, http: HttpStorage, faults: dict[str, Any], message: str
) -> None:
    storage_server.fault(**faults)
    result = await http.delete(["a/1.jpg"])
    assert result.failed == {"a/1.jpg": message}


async def test_keys_that_were_not_requested_are_never_counted(
    storage_server: RunningServer, http: HttpStorage
) -> None:
    storage_server.fault(unrequested_keys=["someone/else.jpg", "a/2.jpg"])
    result = await http.delete(["a/1.jpg"])
    assert result.deleted == {"a/1.jpg"}


async def test_an_absurd_retry_after_is_ignored(storage_server: RunningServer, http: HttpStorage) -> None:
    storage_server.fault(statuses=[503], retry_after="\u00b2")
    with pytest.raises(StorageUnavailable) as raised:
        await http.delete(["a/1.jpg"])
    assert raised.value.retry_after is None


async def test_a_bug_in_a_backend_fails_the_chunk_and_is_counted(tmp_path: Path) -> None:
    class Broken:
        name = "broken"
        max_keys_per_call: int | None = None
        holds_manifests = False

        async def delete(self, keys: Sequence[str]) -> ChunkResult:
            raise RuntimeError(f"a bug, not a storage failure of {len(keys)} keys")

        async def aclose(self) -> None:
            pass

    result = await ConcurrencyLimited(Broken(), Limiter(1), metrics=Metrics()).delete(["a"], gate=OPEN_GATE)
    assert result.whole_call_failed
    assert result.failed == {
        "a": "internal error in the operator's broken backend (RuntimeError); see its log"
    }


def filesystem(root: Path, **settings: object) -> FilesystemStorage:
    config = {"type": "filesystem", "root": str(root), "policy": OPEN_POLICY, **settings}
    return FilesystemStorage("volume", FilesystemStorageConfig.model_validate(config))


async def test_an_unmounted_empty_root_is_unavailable_not_every_key_deleted(tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()  # where the volume should be: empty, and not a mount point
    with pytest.raises(StorageUnavailable, match="is not a mount point: is the volume mounted"):
        await filesystem(mountpoint).delete(["a/1.jpg"])
    with pytest.raises(StorageUnavailable, match=r"has no \.volume: is the volume mounted"):
        await filesystem(mountpoint, requireMountpoint=False, markerFile=".volume").delete(["a/1.jpg"])
    (mountpoint / ".volume").touch()
    result = await filesystem(mountpoint, requireMountpoint=False, markerFile=".volume").delete(["a/1.jpg"])
    assert result.deleted == {"a/1.jpg"}
    with pytest.raises(StorageUnavailable, match="not a directory"):
        await filesystem(tmp_path / "nowhere", requireMountpoint=False).delete(["a/1.jpg"])


async def test_a_root_that_is_a_symlink_is_followed_keys_still_are_not(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    (real / "a" / "1.jpg").write_bytes(b"x")
    (real / ".volume").touch()
    (tmp_path / "link").symlink_to(real)
    storage = filesystem(tmp_path / "link", requireMountpoint=False, markerFile=".volume")
    result = await storage.delete(["a/1.jpg"])
    assert result.deleted == {"a/1.jpg"}
    assert not (real / "a" / "1.jpg").exists()


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def versioned(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A bucket with versioning on: moto's, and a real S3-compatible store's (SeaweedFS)."""
    workdir = tmp_path_factory.mktemp(request.param)
    server = MotoProcess(workdir) if request.param == "moto" else SeaweedProcess(workdir)
    server.start()
    server.client().put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield server
    server.stop()


def versions_left(server: MotoProcess | SeaweedProcess, key: str) -> int:
    listed = server.client().list_object_versions(Bucket=S3_BUCKET, Prefix=key)
    return sum(1 for item in listed.get("Versions", []) if item["Key"] == key)


async def test_a_versioned_bucket_keeps_data_behind_a_delete_marker_and_we_say_so(
    versioned: MotoProcess | SeaweedProcess,
) -> None:
    versioned.seed(["v/hidden.jpg"])
    storage = open_storage("bucket", S3StorageConfig.model_validate(versioned.operator_storage()))
    result = await storage.delete(["v/hidden.jpg"])
    await storage.aclose()
    assert result.failed == {"v/hidden.jpg": DELETE_MARKER_ONLY}  # not "deleted": the data is there
    assert versions_left(versioned, "v/hidden.jpg") == 1


async def test_delete_all_versions_removes_every_version_and_marker(
    versioned: MotoProcess | SeaweedProcess,
) -> None:
    for _ in range(3):
        versioned.seed(["v/gone.jpg"])  # three versions
    config = {**versioned.operator_storage(), "deleteAllVersions": True}
    storage = open_storage("bucket", S3StorageConfig.model_validate(config))
    first_hidden = await open_storage(
        "b", S3StorageConfig.model_validate(versioned.operator_storage())
    ).delete(["v/gone.jpg"])
    assert first_hidden.failed  # a delete marker now too
    result = await storage.delete(["v/gone.jpg", "v/never-existed.jpg"])
    await storage.aclose()
    assert result.deleted == {"v/gone.jpg", "v/never-existed.jpg"}
    listed = versioned.client().list_object_versions(Bucket=S3_BUCKET, Prefix="v/gone.jpg")
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")


# The operator process against hostile storages, with debug logging on.


def hostile_config(
    tmp_path: Path, honest: StorageProcess, hostile: dict[str, StorageProcess]
) -> dict[str, Any]:
    storages = {"photos": honest.operator_storage()}
    for name, server in hostile.items():
        storages[name] = {**server.operator_storage(), "connectTimeoutSeconds": 0.5, "readTimeoutSeconds": 1}
    return {"defaultStorage": "photos", "storages": storages}


def peak_rss(process: OperatorProcess) -> int:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def test_the_operator_survives_hostile_storages_and_every_other_object_completes(
    crd: None, kube: Kube, kubeconfig: Path, tmp_path: Path, storage: StorageProcess
) -> None:
    faults: dict[str, dict[str, Any]] = {
        "huge": {"huge_reply_bytes": 300 * 2**20},  # 300 MiB: more than the chart's memory limit
        "trickle": {"trickle_seconds": 0.5},
        "encoding": {"bad_encoding": True},
        "html": {"not_json": True},
    }
    hostile = {name: StorageProcess(tmp_path / name) for name in faults}
    for name, server in hostile.items():
        server.start()
        server.fault(**faults[name])
    namespace = kube.create_namespace("hostile")
    operator = OperatorProcess(
        tmp_path, kubeconfig, hostile_config(tmp_path, storage, hostile), ["hostile-*"]
    )
    operator.start("--verbose")
    try:
        for name in faults:
            keys = album_keys(f"{namespace}/{name}", 5)
            retry_soon = {"initialSeconds": 1, "maxSeconds": 1}
            create_cleanup(
                kube, namespace, f"from-{name}", keys, storage=name, maxRetries=1, backoff=retry_soon
            )
        honest = {f"album-{n}": album_keys(f"{namespace}/{n}", 40) for n in range(10)}
        storage.seed([key for keys in honest.values() for key in keys])
        for name, keys in honest.items():
            create_cleanup(kube, namespace, name, keys, chunkSize=10)
        for name in honest:
            assert wait_for_phase(kube, namespace, name, "Succeeded")["status"]["deleted"] == 40
        failed = {
            name: wait_for_phase(kube, namespace, f"from-{name}", "Failed")["status"] for name in faults
        }
        peak = peak_rss(operator)
    finally:
        operator.stop()
        for server in hostile.values():
            server.stop()
    reasons = {name: status["failedKeys"][0]["error"] for name, status in failed.items()}
    assert reasons["huge"].startswith("the reply is larger than ")
    assert reasons["trickle"] == "no complete reply within 1.5 s: outcome unknown"
    assert reasons["encoding"] == "the reply is compressed, which was not asked for"
    assert reasons["html"] == "the reply breaks the contract: json_invalid at the body"
    assert all(
        condition["reason"] == "RetriesExhausted"
        for s in failed.values()
        for condition in s["conditions"]
        if condition["type"] == "Failed"
    )
    assert peak < CHART_MEMORY_LIMIT
    assert "Traceback" not in operator.log_text()
    print(f"\nhostile storages: operator peak RSS {peak / 2**20:.0f} MiB")  # noqa: T201


def test_secrets_appear_in_no_log_event_or_status(
    crd: None, kube: Kube, kubeconfig: Path, tmp_path: Path, storage: StorageProcess
) -> None:
    """Each kind of secret, every backend that has one, with debug logging on."""
    bearer, broken, secret_key, session = (
        "s3cr3t-token-7f1e2d",
        "S3cr3t-nl-9f8e",
        "wJalrXUtnFEMI-K7MDENG",
        "IQoJb3JpZ2luX2VjEJr-session",
    )
    (tmp_path / "token").write_text(f"{bearer}\n")
    (tmp_path / "broken-token").write_text(f"{broken}\nx-injected: yes\n")  # h11 would quote it whole
    (tmp_path / "wrong-token").write_text("not-the-token-9a8b7c\n")
    guarded = StorageProcess(tmp_path / "guarded", token_file=tmp_path / "token")
    moto = MotoProcess(tmp_path)
    moto.credentials_file.write_text(
        "[default]\naws_access_key_id = AKIAEXAMPLE\n"
        f"aws_secret_access_key = {secret_key}\naws_session_token = {session}\n"
    )
    guarded.start()
    moto.start()
    namespace = kube.create_namespace("secrets")
    config: dict[str, Any] = {
        "defaultStorage": "guarded",
        "storages": {
            "guarded": {**guarded.operator_storage(), "tokenFile": str(tmp_path / "token")},
            "wrong": {**guarded.operator_storage(), "tokenFile": str(tmp_path / "wrong-token")},
            "broken": {**guarded.operator_storage(), "tokenFile": str(tmp_path / "broken-token")},
            "bucket": moto.operator_storage(),
        },
    }
    operator = OperatorProcess(tmp_path, kubeconfig, config, ["secrets-*"])
    operator.start("--verbose", "--log-format", "json")
    try:
        guarded.fault(fail_keys={f"{namespace}/photo-00001.jpg": -1})
        create_cleanup(kube, namespace, "ok", album_keys(namespace, 3), maxRetries=0)
        create_cleanup(kube, namespace, "rejected", album_keys(namespace, 2), storage="wrong")
        create_cleanup(kube, namespace, "broken", album_keys(namespace, 2), storage="broken", maxRetries=0)
        moto.seed(album_keys(namespace, 2))
        create_cleanup(kube, namespace, "s3", album_keys(namespace, 2), storage="bucket")
        wait_for_phase(kube, namespace, "ok", "Failed")
        wait_for_phase(kube, namespace, "s3", "Succeeded")

        def reported(name: str, text: str) -> Manifest | None:
            found = get_cleanup(kube, namespace, name)
            return found if text in json.dumps(found.get("status", {})) else None

        eventually(
            "the storage to refuse the wrong token", lambda: reported("rejected", "rejected the credentials")
        )
        eventually(
            "the broken token to be refused", lambda: reported("broken", "does not hold a bearer token")
        )
    finally:
        operator.stop()
        guarded.stop()
        moto.stop()

    seen = operator.log_text() + json.dumps(kube.list_objects("v1", "Event", namespace))
    seen += json.dumps([get_cleanup(kube, namespace, name) for name in ("ok", "rejected", "broken", "s3")])
    assert "rejected the credentials" in seen  # the failures are reported...
    assert "does not hold a bearer token" in seen
    for leaked in (bearer, broken, "not-the-token-9a8b7c", secret_key, session, "Bearer "):
        assert leaked not in seen  # ...without any secret
