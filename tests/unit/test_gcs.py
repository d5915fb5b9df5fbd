"""The GCS backend's batch framing and per-key outcomes, at its I/O seam (httpx.MockTransport): what
fake-gcs-server cannot show (a 403, a 429 or a 503 for one key, Google's 204, a throttled batch, a
reply that breaks the contract). Its behaviour against fake-gcs-server is in tests/storage."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
import pytest

from filecleanup.api.config import GcsStorageConfig
from filecleanup.storage import multipart
from filecleanup.storage.errors import StorageThrottled, StorageUnavailable
from filecleanup.storage.gcs import MAX_KEYS_PER_BATCH, GcsStorage, delete_requests

CONFIG = GcsStorageConfig.model_validate(
    {
        "type": "gcs",
        "bucket": "photos",
        "endpoint": "http://gcs.test",
        "auth": "none",
        "allowPlainHttp": True,
        "keyPrefix": "t/",
        "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
    }
)


def answering(statuses: dict[str, int]) -> Callable[[httpx.Request], httpx.Response]:
    """A batch endpoint answering each sub-request by its object's name, as Google does (204 for a
    deletion; its parts name the sub-request they answer)."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        names = re.findall(r"DELETE /storage/v1/b/photos/o/(\S+) HTTP/1.1", body)
        ids = re.findall(r"Content-ID: <(\d+)>", body)
        parts = [
            f"--b\r\nContent-Type: application/http\r\nContent-ID: <response-{index}>\r\n\r\n"
            f"HTTP/1.1 {statuses.get(httpx.URL('http://x/' + name).path.lstrip('/'), 204)} X\r\n"
            "Content-Type: application/json\r\n\r\n{}\r\n"
            for index, name in zip(ids, names, strict=True)
        ]
        body_out = ("".join(parts) + "--b--\r\n").encode()
        headers = {"Content-Type": "multipart/mixed; boundary=b"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body_out))

    return answer


def reply_for(statuses: dict[str, int]) -> httpx.MockTransport:
    return httpx.MockTransport(answering(statuses))


def delete(transport: httpx.MockTransport, keys: list[str]) -> object:
    async def run() -> object:
        storage = GcsStorage("gcs", CONFIG, transport=transport)
        try:
            return await storage.delete(keys)
        finally:
            await storage.aclose()

    return asyncio.run(run())


def test_each_key_gets_its_own_outcome_and_class() -> None:
    statuses = {
        "t/a/403.jpg": 403,
        "t/a/429.jpg": 429,
        "t/a/503.jpg": 503,
        "t/a/404.jpg": 404,
        "t/a/410.jpg": 410,
    }
    result = delete(reply_for(statuses), ["a/ok.jpg", *(key.removeprefix("t/") for key in statuses)])
    assert result.deleted == {"a/ok.jpg", "a/404.jpg"}  # type: ignore[attr-defined]
    assert result.failed == {  # type: ignore[attr-defined]
        "a/403.jpg": "AccessDenied: 403 from the storage",
        "a/429.jpg": "RateLimited: 429 from the storage",
        "a/503.jpg": "ServerError: 503 from the storage",
        "a/410.jpg": "HTTP 410 from the storage",
    }
    assert result.permanent == {"a/403.jpg"}  # type: ignore[attr-defined]


def test_a_chunk_goes_as_batches_of_a_hundred() -> None:
    sent: list[int] = []
    inner = answering({})

    def counting(request: httpx.Request) -> httpx.Response:
        sent.append(request.content.count(b"DELETE "))
        return inner(request)

    keys = [f"a/{i}.jpg" for i in range(250)]
    assert delete(httpx.MockTransport(counting), keys).deleted == set(keys)  # type: ignore[attr-defined]
    assert sent == [MAX_KEYS_PER_BATCH, MAX_KEYS_PER_BATCH, 50]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, StorageThrottled), (503, StorageThrottled), (500, StorageUnavailable), (401, StorageUnavailable)],
)
def test_a_whole_batch_refused_is_throttling_or_an_outage(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind):
        delete(
            httpx.MockTransport(lambda _: httpx.Response(status, stream=httpx.ByteStream(b""))), ["a/1.jpg"]
        )


def test_a_reply_that_names_no_part_confirms_nothing() -> None:
    other = (  # one part, answering a sub-request that was never sent
        b"--b\r\nContent-Type: application/http\r\nContent-ID: <response-7>\r\n\r\n"
        b"HTTP/1.1 204 X\r\n\r\n\r\n--b--\r\n"
    )
    empty = httpx.MockTransport(
        lambda _: httpx.Response(
            200, headers={"Content-Type": "multipart/mixed; boundary=b"}, stream=httpx.ByteStream(other)
        )
    )
    result = delete(empty, ["a/1.jpg"])
    assert result.deleted == set()  # type: ignore[attr-defined]
    assert result.failed == {"a/1.jpg": "not confirmed as deleted by the storage"}  # type: ignore[attr-defined]
    html = httpx.MockTransport(lambda _: httpx.Response(200, stream=httpx.ByteStream(b"<html>")))
    broken = delete(html, ["a/1.jpg"])
    assert broken.deleted == set()  # type: ignore[attr-defined]
    assert broken.failed == {"a/1.jpg": "a batch reply that is not multipart/mixed"}  # type: ignore[attr-defined]


def test_a_batch_body_frames_each_delete_as_google_and_fake_gcs_server_read_it() -> None:
    boundary, body = multipart.batch_body(delete_requests("photos", ["t/a b/1.jpg"]), "<{index}>")
    assert body.startswith(f"--{boundary}\r\nContent-Type: application/http\r\n".encode())
    assert b"DELETE /storage/v1/b/photos/o/t%2Fa%20b%2F1.jpg HTTP/1.1\r\n" in body
    assert body.endswith(f"\r\n\r\n\r\n--{boundary}--\r\n".encode())  # the blank line ends the headers
