"""One behavioural suite for every backend, each against a real peer: the reference HTTP server, moto's
S3 server, and a real directory."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from filecleanup.config import FilesystemStorageConfig, HttpStorageConfig, S3StorageConfig
from filecleanup.storage import Storage, StorageUnavailable, open_storage
from filecleanup.testing.storage_server import STATE, make_app
from tests.s3 import MotoServer

BUCKET = "photos"
PREFIX = "tenants/acme/"


@dataclass
class Backend:
    storage: Storage
    seed: Callable[[list[str]], None]
    exists: Callable[[str], bool]
    take_down: Callable[[], object]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


async def http_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    root = tmp_path / "http-root"
    root.mkdir()
    app = make_app(root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    storage = open_storage("photos", HttpStorageConfig(type="http", url=f"http://127.0.0.1:{port}/delete"))

    def seed(keys: list[str]) -> None:
        for key in keys:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(b"photo")

    yield Backend(storage, seed, lambda key: (root / key).exists(), runner.cleanup)
    await storage.aclose()
    await runner.cleanup()
    assert app[STATE].stats.calls >= 0


async def s3_backend(moto: MotoServer) -> AsyncIterator[Backend]:
    config = S3StorageConfig.model_validate(
        {
            "type": "s3",
            "bucket": BUCKET,
            "endpoint": moto.endpoint,
            "keyPrefix": PREFIX,
            "credentialsFile": str(moto.credentials_file),
            "connectTimeoutSeconds": 0.5,
        }
    )
    storage = open_storage("bucket", config)
    yield Backend(
        storage,
        lambda keys: moto.put(BUCKET, [PREFIX + key for key in keys]),
        lambda key: moto.exists(BUCKET, PREFIX + key),
        moto.stop,
    )
    await storage.aclose()
    if moto.process is not None and moto.process.poll() is not None:
        moto.start()  # taken down by the test: bring it back for the next one
        moto.create_bucket(BUCKET)


async def filesystem_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    root = tmp_path / "volume"
    root.mkdir()
    storage = open_storage("volume", FilesystemStorageConfig(type="filesystem", root=root))

    def seed(keys: list[str]) -> None:
        for key in keys:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(b"photo")

    yield Backend(storage, seed, lambda key: (root / key).exists(), lambda: shutil.rmtree(root))
    await storage.aclose()


@pytest.fixture(params=["http", "s3", "filesystem"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    match request.param:
        case "http":
            made = http_backend(tmp_path)
        case "s3":
            made = s3_backend(request.getfixturevalue("moto"))
        case _:
            made = filesystem_backend(tmp_path)
    async for value in made:
        yield value


KEYS = ["albums/1/a.jpg", "albums/1/b c.jpg", "albums/1/ünïcode.jpg", "albums/2/deep/er/d.jpg"]


async def test_deletes_what_exists_and_confirms_every_key(backend: Backend) -> None:
    backend.seed(KEYS)
    result = await backend.storage.delete(KEYS)
    assert result.deleted == set(KEYS)
    assert not result.failed
    assert not any(backend.exists(key) for key in KEYS)


async def test_missing_keys_count_as_deleted_and_repeats_are_idempotent(backend: Backend) -> None:
    backend.seed(KEYS[:1])
    first = await backend.storage.delete([KEYS[0], "albums/9/never.jpg"])
    again = await backend.storage.delete([KEYS[0], "albums/9/never.jpg"])
    assert first.deleted == again.deleted == {KEYS[0], "albums/9/never.jpg"}


async def test_a_full_chunk_of_a_thousand_keys(backend: Backend) -> None:
    keys = [f"albums/3/{i:04d}.jpg" for i in range(1000)]
    backend.seed(keys[::10])
    result = await backend.storage.delete(keys)
    assert len(result.deleted) == 1000
    assert not any(backend.exists(key) for key in keys[::10])


async def test_only_the_listed_keys_are_deleted(backend: Backend) -> None:
    backend.seed(["albums/4/keep.jpg", "albums/4/drop.jpg", "albums/4/drop.jpg.bak"])
    await backend.storage.delete(["albums/4/drop.jpg"])
    assert backend.exists("albums/4/keep.jpg")
    assert backend.exists("albums/4/drop.jpg.bak")
    assert not backend.exists("albums/4/drop.jpg")


async def test_a_storage_that_is_gone_is_unavailable_not_a_key_failure(backend: Backend) -> None:
    take_down = backend.take_down()
    if take_down is not None and hasattr(take_down, "__await__"):
        await take_down
    with pytest.raises(StorageUnavailable):
        await backend.storage.delete(KEYS)


async def test_s3_key_prefix_confines_deletes(moto: MotoServer) -> None:
    moto.put(BUCKET, ["albums/5/x.jpg", f"{PREFIX}albums/5/x.jpg"])
    async for backend in s3_backend(moto):
        result = await backend.storage.delete(["albums/5/x.jpg"])
        assert result.deleted == {"albums/5/x.jpg"}
    assert not moto.exists(BUCKET, f"{PREFIX}albums/5/x.jpg")
    assert moto.exists(BUCKET, "albums/5/x.jpg")  # outside the prefix: untouched


async def test_filesystem_cannot_escape_its_root(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    (root / "albums").mkdir(parents=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("keep")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jpg").write_text("keep")
    (root / "albums" / "link").symlink_to(tmp_path / "elsewhere")
    (root / "escape.jpg").symlink_to(outside)
    storage = open_storage("volume", FilesystemStorageConfig(type="filesystem", root=root))

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
        "volume", FilesystemStorageConfig(type="filesystem", root=root, prune_empty_dirs=True)
    )
    await storage.delete(["a/b/c/1.jpg"])
    assert not (root / "a" / "b" / "c").exists()
    assert (root / "a" / "b").exists()  # still holds 2.jpg
    await storage.delete(["a/b/2.jpg"])
    assert list(root.iterdir()) == []
    assert root.exists()  # never the root itself
