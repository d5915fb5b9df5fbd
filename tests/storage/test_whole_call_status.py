"""A whole call's status is read by one rule on both network backends (storage/transport.py,
check_status): any 5xx is an outage, whether the storage acted on the call or not; 429 and 503 are
throttling; any other status fails the chunk's keys. Each backend against its real peer (the reference
HTTP server, moto's S3 server), behind a proxy that answers chosen calls as a failing storage, or the
load balancer in front of one, does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from filecleanup.api.config import HttpStorageConfig, S3StorageConfig
from filecleanup.api.metrics import Metrics
from filecleanup.storage import Backend
from filecleanup.storage.base import ChecksExistence, ConcurrencyLimited
from filecleanup.storage.errors import StorageThrottled, StorageUnavailable
from filecleanup.storage.limits import Limiter
from filecleanup.storage.opening import open_storage
from tests.storage.fault_proxy import Fault, FaultProxy, s3_error
from tests.storage_fixtures import RunningServer, storage_server
from tools.devkit.gates import OPEN_GATE
from tools.devkit.storages import OPEN_POLICY, MotoProcess

__all__ = ["storage_server"]  # a fixture
KEYS = ["albums/1/a.jpg", "albums/1/b.jpg", "albums/2/c.jpg"]


@dataclass
class Peer:
    """A backend whose calls pass the proxy on their way to its real storage."""

    name: str
    storage: Backend
    proxy: FaultProxy
    seed: Callable[[list[str]], None]
    exists: Callable[[str], bool]
    deletes: Callable[[str, str], bool]  # (method, path): the delete call
    checks: Callable[[str, str], bool]  # the dry run's check
    error_body: Callable[[str], bytes]  # an error body as this storage writes one, for a code
    detail: str  # what the backend reads of that body into its message

    def failing(
        self, status: int, *, after_acting: bool = False, code: str = "InternalError", check: bool = False
    ) -> Fault:
        return Fault(
            status,
            self.checks if check else self.deletes,
            self.error_body(code),
            after_acting=after_acting,
            retry_after="4",
        )


@pytest.fixture(params=["http", "s3"])
async def peer(request: pytest.FixtureRequest, storage_server: RunningServer) -> AsyncIterator[Peer]:
    if request.param == "http":
        proxy = FaultProxy(storage_server.url.removesuffix("/delete")).start()
        config = HttpStorageConfig.model_validate(
            {
                "type": "http",
                "url": f"{proxy.base}/delete",
                "dryRunUrl": f"{proxy.base}/exists",
                "policy": OPEN_POLICY,
                "allowPlainHttp": True,
            }
        )
        made = Peer(
            "photos",
            open_storage("photos", config),
            proxy,
            storage_server.seed,
            storage_server.exists,
            deletes=lambda method, path: method == "POST" and path == "/delete",
            checks=lambda method, path: method == "POST" and path == "/exists",
            error_body=lambda code: f'{{"error": "{code}"}}'.encode(),
            detail="",  # the HTTP contract's error bodies are not read (nor quoted)
        )
    else:
        moto: MotoProcess = request.getfixturevalue("moto")
        proxy = FaultProxy(moto.endpoint).start()
        settings = {**moto.operator_storage(), "endpoint": proxy.base}
        made = Peer(
            "bucket",
            open_storage("bucket", S3StorageConfig.model_validate(settings)),
            proxy,
            moto.seed,
            moto.exists,
            deletes=lambda method, path: method == "POST" and path.endswith("?delete"),
            checks=lambda method, _: method == "HEAD",
            error_body=s3_error,
            detail=" InternalError",  # S3's error code, as S3 writes it
        )
    yield made
    await made.storage.aclose()
    proxy.stop()


@pytest.mark.parametrize("after_acting", [False, True], ids=["before-acting", "after-acting"])
@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_whole_call_5xx_is_an_outage_and_nothing_is_counted_deleted(
    peer: Peer, status: int, after_acting: bool
) -> None:
    peer.seed(KEYS)
    peer.proxy.fail(peer.failing(status, after_acting=after_acting))
    with pytest.raises(StorageUnavailable) as raised:
        await peer.storage.delete(KEYS)
    assert not isinstance(raised.value, StorageThrottled)
    assert str(raised.value) == f"storage {peer.name} answered {status}{peer.detail}"
    assert raised.value.retry_after == 4
    # Whether the storage acted or not, no key was reported deleted (nor failed): all stay pending.
    assert all(peer.exists(key) for key in KEYS) is not after_acting
    again = await peer.storage.delete(KEYS)  # the storage is back: the same call, confirmed by it
    assert again.deleted == set(KEYS)
    assert not again.failed
    assert not any(peer.exists(key) for key in KEYS)


async def test_held_to_its_limits_an_outage_is_raised_not_counted_against_the_keys(peer: Peer) -> None:
    """What the rounds see (storage/base.py, ConcurrencyLimited): an outage raises, which stops the
    round without spending the keys' retries, and marks the storage unavailable; no key failed."""
    metrics = Metrics()
    limited = ConcurrencyLimited(peer.storage, Limiter(2), metrics)
    peer.seed(KEYS)
    peer.proxy.fail(peer.failing(500, after_acting=True))
    with pytest.raises(StorageUnavailable, match=f"answered 500{peer.detail}$"):
        await limited.delete(KEYS, gate=OPEN_GATE)
    assert metrics.storage_available.labels(peer.name)._value.get() == 0
    assert metrics.keys_failed.labels(peer.name)._value.get() == 0
    result = await limited.delete(KEYS, gate=OPEN_GATE)
    assert result.deleted == set(KEYS)
    assert metrics.storage_available.labels(peer.name)._value.get() == 1


async def test_throttling_is_read_alike(peer: Peer) -> None:
    peer.seed(KEYS)
    peer.proxy.fail(peer.failing(503, code="SlowDown"))
    with pytest.raises(StorageThrottled, match="answered 503"):
        await peer.storage.delete(KEYS)
    assert all(peer.exists(key) for key in KEYS)


@pytest.mark.parametrize("status", [400, 404])
async def test_any_other_whole_call_status_fails_the_chunk_alike(peer: Peer, status: int) -> None:
    peer.seed(KEYS)
    peer.proxy.fail(peer.failing(status, code="InvalidRequest"))
    result = await peer.storage.delete(KEYS)
    assert result.whole_call_failed
    assert not result.deleted
    detail = "" if peer.detail == "" else " InvalidRequest"
    assert result.failed == dict.fromkeys(KEYS, f"storage answered HTTP {status}{detail}")
    assert all(peer.exists(key) for key in KEYS)


async def test_a_whole_call_500_on_a_dry_run_check_is_an_outage_alike(peer: Peer) -> None:
    peer.seed(KEYS)
    checker = peer.storage
    assert isinstance(checker, ChecksExistence)
    peer.proxy.fail(peer.failing(500, check=True))
    with pytest.raises(StorageUnavailable, match="answered 500"):
        await checker.exists(KEYS)
    assert (await checker.exists(KEYS)).existing == set(KEYS)  # the storage is back
