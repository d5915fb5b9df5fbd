"""The transport and the status tables, in-process: ``httpx.MockTransport`` plays the storage, so every
status, header and failure of a call is given exactly, and each must come out classified."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import httpx
import pytest

from filecleanup.api.config import HttpStorageConfig
from filecleanup.storage.base import StorageUnavailable
from filecleanup.storage.errors import CallRefused
from filecleanup.storage.http import HttpStorage
from filecleanup.storage.s3 import read_delete_reply
from filecleanup.storage.transport import Reply, StatusClass, check_status, classify_status, reply_limit

KEYS = ["a/1.jpg", "a/2.jpg"]
OPEN_POLICY = {"allowedNamespaces": "*", "keyPrefix": ""}
Handler = Callable[[httpx.Request], httpx.Response]


def http_storage(handler: Handler) -> HttpStorage:
    config = HttpStorageConfig.model_validate(
        {
            "type": "http",
            "url": "http://storage.invalid/delete",
            "policy": OPEN_POLICY,
            "readTimeoutSeconds": 1,
        }
    )
    return HttpStorage("photos", config, transport=httpx.MockTransport(handler))


def answering(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    # A stream, as the network gives: the transport reads it piece by piece, within its limit.
    return lambda _: httpx.Response(status, stream=httpx.ByteStream(body), headers=headers)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, StatusClass.OK),
        (429, StatusClass.OVERLOADED),
        (503, StatusClass.OVERLOADED),
        (401, StatusClass.CREDENTIALS_REFUSED),
        (403, StatusClass.CREDENTIALS_REFUSED),
        (500, StatusClass.SERVER_ERROR),
        (502, StatusClass.SERVER_ERROR),
        (599, StatusClass.SERVER_ERROR),
        (201, StatusClass.REFUSED),
        (204, StatusClass.REFUSED),
        (301, StatusClass.REFUSED),
        (400, StatusClass.REFUSED),
        (404, StatusClass.REFUSED),
    ],
)
def test_the_status_table(status: int, expected: StatusClass) -> None:
    assert classify_status(status) is expected


class TestHttpStorage:
    async def test_confirmed_keys_are_deleted_and_the_others_failed(self) -> None:
        body = json.dumps({"deleted": ["a/1.jpg"], "errors": [{"key": "a/2.jpg", "message": "locked"}]})
        result = await http_storage(answering(200, body.encode())).delete(KEYS)
        assert (set(result.deleted), dict(result.failed)) == ({"a/1.jpg"}, {"a/2.jpg": "locked"})

    @pytest.mark.parametrize("status", [429, 503])
    async def test_overload_is_unavailable_with_its_retry_after(self, status: int) -> None:
        storage = http_storage(answering(status, headers={"Retry-After": "7"}))
        with pytest.raises(StorageUnavailable) as raised:
            await storage.delete(KEYS)
        assert raised.value.retry_after == 7

    @pytest.mark.parametrize("status", [401, 403])
    async def test_refused_credentials_are_unavailable_not_the_keys_fault(self, status: int) -> None:
        with pytest.raises(StorageUnavailable, match="rejected the credentials"):
            await http_storage(answering(status)).delete(KEYS)

    @pytest.mark.parametrize("status", [500, 502])
    async def test_server_errors_are_unavailable_as_over_s3(self, status: int) -> None:
        with pytest.raises(StorageUnavailable, match=f"storage photos answered {status}$"):
            await http_storage(answering(status)).delete(KEYS)

    @pytest.mark.parametrize("status", [400, 404, 204])
    async def test_other_statuses_fail_the_chunk(self, status: int) -> None:
        result = await http_storage(answering(status)).delete(KEYS)
        assert result.whole_call_failed and set(result.failed) == set(KEYS)
        assert result.failed["a/1.jpg"] == f"storage answered HTTP {status}"

    async def test_a_refused_connection_is_unavailable(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        with pytest.raises(StorageUnavailable, match="connection failed"):
            await http_storage(refuse).delete(KEYS)

    async def test_a_read_timeout_fails_the_chunk_with_a_fixed_message(self) -> None:
        def silent(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("Bearer s3cr3t in the text", request=request)

        result = await http_storage(silent).delete(KEYS)
        assert set(result.failed.values()) == {"no reply within 1 s: outcome unknown"}

    async def test_a_compressed_reply_is_refused(self) -> None:
        body = gzip.compress(json.dumps({"deleted": KEYS}).encode())
        result = await http_storage(answering(200, body, {"Content-Encoding": "gzip"})).delete(KEYS)
        assert result.deleted == set()
        assert set(result.failed.values()) == {"the reply is compressed, which was not asked for"}

    async def test_a_reply_past_the_limit_is_cut_off(self) -> None:
        result = await http_storage(answering(200, b" " * (reply_limit(KEYS) + 1))).delete(KEYS)
        assert result.deleted == set()
        assert set(result.failed.values()) == {f"the reply is larger than {reply_limit(KEYS)} bytes"}


class TestS3StatusTable:
    @pytest.mark.parametrize("status", [429, 503, 500, 502, 401, 403])
    def test_overload_server_errors_and_credentials_are_unavailable(self, status: int) -> None:
        reply = Reply(status, httpx.Headers({"Retry-After": "3"}), b"<Error><Code>SlowDown</Code></Error>")
        with pytest.raises(StorageUnavailable, match=f"answered {status} SlowDown") as raised:
            read_delete_reply("bucket", reply)
        assert raised.value.retry_after == 3

    @pytest.mark.parametrize("status", [400, 404, 301])
    def test_other_statuses_fail_the_chunk(self, status: int) -> None:
        with pytest.raises(CallRefused, match=f"storage answered HTTP {status}"):
            read_delete_reply("bucket", Reply(status, httpx.Headers(), b""))

    def test_a_200_is_read_on(self) -> None:
        check_status("bucket", Reply(200, httpx.Headers(), b""))  # raises for any other status
