"""One behavioural suite for every backend, each against a real peer: the reference HTTP server, moto's
S3 server, SeaweedFS (a real S3-compatible store), fake-gcs-server, Azurite, and a real directory; and
what each can do besides deleting (storage/base.py's capabilities), as its configuration gives it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from filecleanup.api.config import (
    AzureBlobStorageConfig,
    FilesystemStorageConfig,
    GcsStorageConfig,
    HttpStorageConfig,
    RateLimit,
    S3StorageConfig,
)
from filecleanup.api.metrics import Metrics
from filecleanup.storage import Backend, StorageUnavailable
from filecleanup.storage.base import (
    ChecksExistence,
    ConcurrencyLimited,
    ExistsResult,
    ListsVersions,
    ObjectChanged,
    ObjectMissing,
    ObjectRefused,
    ObjectStore,
)
from filecleanup.storage.limits import Limiter
from filecleanup.storage.opening import open_storage
from tests.storage_fixtures import RunningServer, storage_server
from tools.devkit.gates import OPEN_GATE
from tools.devkit.storages import (
    OPEN_POLICY,
    S3_BUCKET,
    AzuriteProcess,
    DirectoryStorage,
    FakeGcsProcess,
    MotoProcess,
    SeaweedProcess,
)

PREFIX = "tenants/acme/"
__all__ = ["storage_server"]  # a fixture


@dataclass
class BackendUnderTest:
    storage: Backend
    seed: Callable[[list[str]], None]
    exists: Callable[[str], bool]
    take_down: Callable[[], object]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    server = MotoProcess(tmp_path_factory.mktemp("moto"), key_prefix=PREFIX)
    server.start()
    yield server
    server.stop()


async def http_backend(server: RunningServer) -> AsyncIterator[BackendUnderTest]:
    base = server.url.removesuffix("delete")
    config = {
        "type": "http",
        "url": server.url,
        "objectsUrl": f"{base}objects/",
        "dryRunUrl": f"{base}exists",  # the reference server's dry-run extension
    }
    storage = open_storage("photos", HttpStorageConfig.model_validate({**config, "policy": OPEN_POLICY}))
    yield BackendUnderTest(storage, server.seed, server.exists, server.stop)
    await storage.aclose()


async def s3_backend(moto: MotoProcess) -> AsyncIterator[BackendUnderTest]:
    config = S3StorageConfig.model_validate({**moto.operator_storage(), "connectTimeoutSeconds": 0.5})
    storage = open_storage("bucket", config)
    yield BackendUnderTest(storage, moto.seed, moto.exists, moto.stop)
    await storage.aclose()
    if moto.process is not None and moto.process.poll() is not None:
        moto.start()  # taken down by the test: bring it back for the next one


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedProcess]:
    store = SeaweedProcess(tmp_path_factory.mktemp("seaweedfs"), key_prefix=PREFIX)
    store.start()
    yield store
    store.stop()


async def seaweedfs_backend(store: SeaweedProcess) -> AsyncIterator[BackendUnderTest]:
    config = S3StorageConfig.model_validate({**store.operator_storage(), "connectTimeoutSeconds": 0.5})
    storage = open_storage("seaweedfs", config)
    yield BackendUnderTest(storage, store.seed, store.exists, store.stop)
    await storage.aclose()
    if store.process is not None and store.process.poll() is not None:
        store.start()  # taken down by the test: bring it back (its data kept) for the next one


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcsProcess]:
    server = FakeGcsProcess(tmp_path_factory.mktemp("fake-gcs"), key_prefix=PREFIX)
    server.start()
    yield server
    server.stop()


async def gcs_backend(server: FakeGcsProcess) -> AsyncIterator[BackendUnderTest]:
    config = GcsStorageConfig.model_validate({**server.operator_storage(), "connectTimeoutSeconds": 0.5})
    storage = open_storage("gcs", config)
    yield BackendUnderTest(storage, server.seed, server.exists, server.stop)
    await storage.aclose()
    if server.process is not None and server.process.poll() is not None:
        server.start()  # taken down by the test (in memory: empty again) for the next one


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteProcess]:
    server = AzuriteProcess(tmp_path_factory.mktemp("azurite"), key_prefix=PREFIX)
    server.start()
    yield server
    server.stop()


async def azureblob_backend(server: AzuriteProcess) -> AsyncIterator[BackendUnderTest]:
    config = AzureBlobStorageConfig.model_validate(
        {**server.operator_storage(), "connectTimeoutSeconds": 0.5}
    )
    storage = open_storage("azureblob", config)
    yield BackendUnderTest(storage, server.seed, server.exists, server.stop)
    await storage.aclose()
    if server.process is not None and server.process.poll() is not None:
        server.start()  # taken down by the test (in memory: empty again) for the next one


async def filesystem_backend(tmp_path: Path) -> AsyncIterator[BackendUnderTest]:
    volume = DirectoryStorage(tmp_path / "volume")
    storage = open_storage("volume", FilesystemStorageConfig.model_validate(volume.operator_storage()))
    yield BackendUnderTest(storage, volume.seed, volume.exists, lambda: shutil.rmtree(volume.root))
    await storage.aclose()


@pytest.fixture(params=["http", "s3", "seaweedfs", "gcs", "azureblob", "filesystem"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, storage_server: RunningServer
) -> AsyncIterator[BackendUnderTest]:
    match request.param:
        case "http":
            made = http_backend(storage_server)
        case "s3":
            made = s3_backend(request.getfixturevalue("moto"))
        case "seaweedfs":
            made = seaweedfs_backend(request.getfixturevalue("seaweedfs"))
        case "gcs":
            made = gcs_backend(request.getfixturevalue("fake_gcs"))
        case "azureblob":
            made = azureblob_backend(request.getfixturevalue("azurite"))
        case _:
            made = filesystem_backend(tmp_path)
    async for value in made:
        yield value


KEYS = ["albums/1/a.jpg", "albums/1/b c.jpg", "albums/1/ünïcode.jpg", "albums/2/deep/er/d.jpg"]


async def test_deletes_what_exists_and_confirms_every_key(backend: BackendUnderTest) -> None:
    backend.seed(KEYS)
    result = await backend.storage.delete(KEYS)
    assert result.deleted == set(KEYS)
    assert not result.failed
    assert not any(backend.exists(key) for key in KEYS)


async def test_missing_keys_count_as_deleted_and_repeats_are_idempotent(backend: BackendUnderTest) -> None:
    backend.seed(KEYS[:1])
    first = await backend.storage.delete([KEYS[0], "albums/9/never.jpg"])
    again = await backend.storage.delete([KEYS[0], "albums/9/never.jpg"])
    assert first.deleted == again.deleted == {KEYS[0], "albums/9/never.jpg"}


async def test_a_full_chunk_of_a_thousand_keys(backend: BackendUnderTest) -> None:
    keys = [f"albums/3/{i:04d}.jpg" for i in range(1000)]
    backend.seed(keys[::10])
    result = await backend.storage.delete(keys)
    assert len(result.deleted) == 1000
    assert not any(backend.exists(key) for key in keys[::10])


async def test_only_the_listed_keys_are_deleted(backend: BackendUnderTest) -> None:
    backend.seed(["albums/4/keep.jpg", "albums/4/drop.jpg", "albums/4/drop.jpg.bak"])
    await backend.storage.delete(["albums/4/drop.jpg"])
    assert backend.exists("albums/4/keep.jpg")
    assert backend.exists("albums/4/drop.jpg.bak")
    assert not backend.exists("albums/4/drop.jpg")


async def test_a_storage_that_is_gone_is_unavailable_not_a_key_failure(backend: BackendUnderTest) -> None:
    take_down = backend.take_down()
    if take_down is not None and hasattr(take_down, "__await__"):
        await take_down
    with pytest.raises(StorageUnavailable):
        await backend.storage.delete(KEYS)
    assert isinstance(backend.storage, ChecksExistence)
    with pytest.raises(StorageUnavailable):
        await backend.storage.exists(KEYS)


async def test_a_dry_run_check_tells_what_exists_and_deletes_nothing(backend: BackendUnderTest) -> None:
    backend.seed(KEYS[:2])
    checker = backend.storage
    assert isinstance(checker, ChecksExistence)
    result = await checker.exists([*KEYS, "albums/9/never.jpg"])
    assert result.existing == set(KEYS[:2])
    assert result.missing == {*KEYS[2:], "albums/9/never.jpg"}
    assert not result.forbidden
    assert all(backend.exists(key) for key in KEYS[:2])


async def test_objects_are_read_a_range_at_a_time_and_written_whole(backend: BackendUnderTest) -> None:
    """What manifests and failure reports need of a storage."""
    store = backend.storage
    assert isinstance(store, ObjectStore)
    data = "".join(f"albums/7/{i:05d}.jpg\n" for i in range(2000)).encode()
    await store.write("albums/7/.manifest", data)
    first = await store.read("albums/7/.manifest", 0, 100)
    assert first.data == data[:100]
    assert first.version  # every backend here names the version it read
    pinned = first.version
    assert (await store.read("albums/7/.manifest", 30_000, 10_000, version=pinned)).data == data[
        30_000:40_000
    ]
    assert (await store.read("albums/7/.manifest", len(data) - 5, 100, version=pinned)).data == data[-5:]
    assert (await store.read("albums/7/.manifest", len(data), 100, version=pinned)).data == b""
    with pytest.raises(ObjectMissing):
        await store.read("albums/7/.no-such-manifest", 0, 100)
    await store.write("albums/7/.manifest", b"replaced\n")
    assert (await store.read("albums/7/.manifest", 0, 100)).data == b"replaced\n"
    with pytest.raises(ObjectChanged):  # pinned reads see the replacement, and refuse it
        await store.read("albums/7/.manifest", 0, 100, version=pinned)


async def test_s3_key_prefix_confines_deletes(moto: MotoProcess) -> None:
    moto.client().put_object(Bucket=S3_BUCKET, Key="albums/5/x.jpg", Body=b"outside the prefix")
    moto.seed(["albums/5/x.jpg"])
    async for backend in s3_backend(moto):
        result = await backend.storage.delete(["albums/5/x.jpg"])
        assert result.deleted == {"albums/5/x.jpg"}
    assert not moto.exists("albums/5/x.jpg")
    listed = moto.client().list_objects_v2(Bucket=S3_BUCKET, Prefix="albums/5/")
    assert [item["Key"] for item in listed.get("Contents", [])] == ["albums/5/x.jpg"]  # untouched


async def test_filesystem_cannot_escape_its_root(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    (root / "albums").mkdir(parents=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("keep")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jpg").write_text("keep")
    (root / "albums" / "link").symlink_to(tmp_path / "elsewhere")
    (root / "escape.jpg").symlink_to(outside)
    storage = open_storage(
        "volume",
        FilesystemStorageConfig.model_validate(
            {"type": "filesystem", "root": str(root), "policy": OPEN_POLICY, "requireMountpoint": False}
        ),
    )

    # A dry run's check walks as a delete does: what a delete would refuse is forbidden.
    assert isinstance(storage, ChecksExistence)
    checked = await storage.exists(
        ["../secret.txt", "albums/link/x.jpg", "escape.jpg", "albums", "albums/none.jpg"]
    )
    assert checked.forbidden == {"../secret.txt", "albums/link/x.jpg", "albums"}  # "albums": a directory
    assert checked.existing == {"escape.jpg"}
    assert checked.missing == {"albums/none.jpg"}

    result = await storage.delete(
        ["../secret.txt", "albums/../../secret.txt", "albums/link/x.jpg", "escape.jpg", "/"]
    )
    assert (tmp_path / "elsewhere" / "x.jpg").exists()
    assert outside.read_text() == "keep"
    assert result.failed["../secret.txt"] == "key has a '..' path segment"
    assert result.failed["albums/../../secret.txt"] == "key has a '..' path segment"
    assert result.failed["albums/link/x.jpg"] == "key 'link' is a symlink, which is not followed"
    assert result.failed["/"] == "key names the root itself"
    # A symlink that is itself the key is removed as a link; what it points to stays.
    assert "escape.jpg" in result.deleted
    assert not (root / "escape.jpg").is_symlink()


async def test_filesystem_prunes_directories_left_empty(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    for key in ["a/b/c/1.jpg", "a/b/2.jpg"]:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text("x")
    storage = open_storage(
        "volume",
        FilesystemStorageConfig.model_validate(
            {
                "type": "filesystem",
                "root": str(root),
                "policy": OPEN_POLICY,
                "pruneEmptyDirs": True,
                "requireMountpoint": False,
            }
        ),
    )
    await storage.delete(["a/b/c/1.jpg"])
    assert not (root / "a" / "b" / "c").exists()
    assert (root / "a" / "b").exists()  # still holds 2.jpg
    await storage.delete(["a/b/2.jpg"])
    assert list(root.iterdir()) == []
    assert root.exists()  # never the root itself


@pytest.mark.parametrize(
    ("urls", "holds_objects", "checks_existence"),
    [
        ({}, False, False),
        ({"objectsUrl": "http://storage.test/objects/"}, True, False),
        ({"dryRunUrl": "http://storage.test/exists"}, False, True),
        (
            {"objectsUrl": "http://storage.test/objects/", "dryRunUrl": "http://storage.test/exists"},
            True,
            True,
        ),
    ],
)
async def test_an_http_storage_can_do_what_its_configuration_gives_and_no_more(
    urls: dict[str, str], holds_objects: bool, checks_existence: bool
) -> None:
    config = {"type": "http", "url": "http://storage.test/delete", "policy": OPEN_POLICY, **urls}
    backend = open_storage("photos", HttpStorageConfig.model_validate(config))
    assert isinstance(backend, ObjectStore) is holds_objects
    assert isinstance(backend, ChecksExistence) is checks_existence
    assert not isinstance(backend, ListsVersions)
    limited = ConcurrencyLimited(backend, Limiter(1, rate_limit=RateLimit(calls_per_second=0.001)), Metrics())
    assert limited.holds_manifests is holds_objects  # what the planner reads
    if not holds_objects:
        with pytest.raises(ObjectRefused, match="holds no manifests"):
            await limited.read("albums/1/.manifest", 0, 100)
    if not checks_existence:  # every key unknown at once: no call, no wait for the rate limit's tokens
        checked = await asyncio.wait_for(limited.exists(KEYS * 10, gate=OPEN_GATE), 1)
        assert checked == ExistsResult.unknown()
    await limited.aclose()


async def test_s3_and_filesystem_storages_can_do_everything_they_are_asked(
    moto: MotoProcess, tmp_path: Path
) -> None:
    s3 = open_storage("bucket", S3StorageConfig.model_validate(moto.operator_storage()))
    volume = DirectoryStorage(tmp_path / "volume")
    files = open_storage("volume", FilesystemStorageConfig.model_validate(volume.operator_storage()))
    for backend in (s3, files):
        assert isinstance(backend, ObjectStore)
        assert isinstance(backend, ChecksExistence)
        assert ConcurrencyLimited(backend, Limiter(1), Metrics()).holds_manifests
        await backend.aclose()
    assert isinstance(s3, ListsVersions)  # deleteAllVersions lists them
    assert not isinstance(files, ListsVersions)
