"""The HTTP backend against the real reference storage server on loopback, faults switched on."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from filecleanup.api.metrics import Metrics
from filecleanup.storage.base import ConcurrencyLimited, StorageThrottled, StorageUnavailable
from filecleanup.storage.limits import Limiter
from tests.storage_fixtures import RunningServer, http_backend, storage_server
from tools.devkit.gates import OPEN_GATE

__all__ = ["storage_server"]


async def test_deletes_files_and_counts_missing_ones_as_deleted(storage_server: RunningServer) -> None:
    storage_server.seed(["a/1.jpg", "a/2.jpg"])
    storage = http_backend(storage_server.url)
    result = await storage.delete(["a/1.jpg", "a/2.jpg", "a/never-existed.jpg"])
    await storage.aclose()
    assert result.deleted == {"a/1.jpg", "a/2.jpg", "a/never-existed.jpg"}
    assert not result.failed
    assert not storage_server.exists("a/1.jpg")


async def test_a_failing_key_fails_alone(storage_server: RunningServer) -> None:
    storage_server.seed(["a/1.jpg", "a/2.jpg"])
    storage_server.fault(fail_keys={"a/2.jpg": 1})
    storage = http_backend(storage_server.url)
    result = await storage.delete(["a/1.jpg", "a/2.jpg"])
    await storage.aclose()
    assert result.deleted == {"a/1.jpg"}
    assert result.failed == {"a/2.jpg": "injected failure"}
    assert not result.whole_call_failed
    assert storage_server.exists("a/2.jpg")


@pytest.mark.parametrize("status", [503, 429])
async def test_overload_is_storage_unavailable_with_retry_after(
    storage_server: RunningServer, status: int
) -> None:
    storage_server.fault(statuses=[status], retry_after="7")
    storage = http_backend(storage_server.url)
    with pytest.raises(StorageUnavailable) as raised:
        await storage.delete(["a/1.jpg"])
    await storage.aclose()
    assert raised.value.retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_server_error_is_an_outage_and_nothing_is_deleted(
    storage_server: RunningServer, status: int
) -> None:
    """Read as every S3 call is (storage/transport.py, check_status): the keys stay pending, and
    no retry is spent on them."""
    storage_server.seed(["a/1.jpg"])
    storage_server.fault(statuses=[status], retry_after="4")
    storage = http_backend(storage_server.url)
    with pytest.raises(StorageUnavailable, match=f"storage photos answered {status}$") as raised:
        await storage.delete(["a/1.jpg", "a/2.jpg"])
    assert not isinstance(raised.value, StorageThrottled)  # an outage: not sent again at once
    assert raised.value.retry_after == 4
    assert storage_server.exists("a/1.jpg")
    result = await storage.delete(["a/1.jpg", "a/2.jpg"])  # the storage is back
    await storage.aclose()
    assert result.deleted == {"a/1.jpg", "a/2.jpg"}


@pytest.mark.parametrize("status", [400, 404])
async def test_other_errors_fail_the_whole_chunk(storage_server: RunningServer, status: int) -> None:
    storage_server.seed(["a/1.jpg"])
    storage_server.fault(statuses=[status])
    storage = http_backend(storage_server.url)
    result = await storage.delete(["a/1.jpg", "a/2.jpg"])
    await storage.aclose()
    assert result.whole_call_failed
    assert result.failed == {
        "a/1.jpg": f"storage answered HTTP {status}",
        "a/2.jpg": f"storage answered HTTP {status}",
    }
    assert storage_server.exists("a/1.jpg")


async def test_read_timeout_leaves_the_outcome_unknown(storage_server: RunningServer) -> None:
    storage_server.fault(hang_calls=1, hang_seconds=2)
    storage = http_backend(storage_server.url, readTimeoutSeconds=0.3)
    result = await storage.delete(["a/1.jpg"])
    await storage.aclose()
    assert result.whole_call_failed
    assert "outcome unknown" in result.failed["a/1.jpg"]


async def test_a_reply_that_breaks_the_contract_fails_the_chunk(storage_server: RunningServer) -> None:
    storage_server.fault(broken_replies=1)
    storage = http_backend(storage_server.url)
    result = await storage.delete(["a/1.jpg"])
    await storage.aclose()
    assert result.whole_call_failed
    assert result.deleted == frozenset()
    assert "breaks the contract" in result.failed["a/1.jpg"]


async def test_connection_refused_is_storage_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = http_backend(f"http://127.0.0.1:{port}/delete", connectTimeoutSeconds=0.5)
    with pytest.raises(StorageUnavailable, match="cannot connect"):
        await storage.delete(["a/1.jpg"])
    await storage.aclose()


async def test_bearer_token_is_read_from_its_file_and_reread_on_rotation(
    storage_server: RunningServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    storage_server.state.token = "new-token"
    storage = http_backend(storage_server.url, tokenFile=str(token_file))
    with pytest.raises(StorageUnavailable, match="rejected the credentials"):
        await storage.delete(["a/1.jpg"])
    token_file.write_text("new-token\n")
    result = await storage.delete(["a/1.jpg"])
    await storage.aclose()
    assert result.deleted == {"a/1.jpg"}


async def test_concurrency_limit_holds_across_callers(storage_server: RunningServer) -> None:
    storage_server.fault(latency_seconds=0.05)
    storage = ConcurrencyLimited(
        http_backend(storage_server.url, maxConcurrentRequests=3), Limiter(3), metrics=Metrics()
    )
    await asyncio.gather(*(storage.delete([f"k/{i}"], gate=OPEN_GATE) for i in range(12)))
    await storage.aclose()
    assert storage_server.state.stats.peak_in_flight == 3
    assert storage_server.state.stats.calls == 12
