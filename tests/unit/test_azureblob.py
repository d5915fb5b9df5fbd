"""The Azure Blob backend at its I/O seam (httpx.MockTransport), for what Azurite cannot show: held blobs
(409 BlobImmutableDueToLegalHold and BlobImmutableDueToPolicy), Azure's throttling per sub-request,
Microsoft Entra ID tokens, and replies that break the contract. Its behaviour against Azurite, which
checks every SharedKey signature, is in tests/storage and tests/integration."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from filecleanup.api.config import AzureBlobStorageConfig
from filecleanup.storage.azureblob import (
    IMMUTABILITY_POLICY,
    MAX_KEYS_PER_BATCH,
    AzureBlobStorage,
    blob_names,
)
from filecleanup.storage.base import ChunkResult
from filecleanup.storage.errors import ReplyBroken, StorageThrottled, StorageUnavailable
from filecleanup.storage.holds import LEGAL_HOLD

T = TypeVar("T")
POLICY = {"allowedNamespaces": "*", "keyPrefix": ""}
BASE = {"type": "azureblob", "account": "photostore", "container": "photos", "policy": POLICY}
ENTRA = AzureBlobStorageConfig.model_validate({**BASE, "keyPrefix": "t/"})
SUB_REQUEST = re.compile(r"DELETE /photos/t/(\S+) HTTP/1.1\r\n((?:[^\r\n]+\r\n)*)")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class Credential:
    """azure-identity's credential contract: a token and its expiry, counted."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.lifetime = lifetime
        self.calls = 0

    def get_token(self, *scopes: str) -> Any:
        assert scopes == ("https://storage.azure.com/.default",)
        self.calls += 1
        return SimpleNamespace(token=f"token-{self.calls}", expires_on=time.time() + self.lifetime)


def batch_reply(answers: list[tuple[int, str | None]], *, status: int = 202) -> httpx.Response:
    """A Blob Batch reply: one part per sub-request, its status and error code, as Azure writes it."""
    parts = [
        f"--batchresponse_x\r\nContent-Type: application/http\r\nContent-ID: {index}\r\n\r\n"
        f"HTTP/1.1 {code} Reason\r\n"
        + (f"x-ms-error-code: {error}\r\n" if error else "")
        + "x-ms-request-id: 1\r\n\r\n"
        for index, (code, error) in enumerate(answers)
    ]
    body = ("".join(parts) + "--batchresponse_x--\r\n").encode()
    headers = {"Content-Type": "multipart/mixed; boundary=batchresponse_x"}
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def storage(
    answer: Callable[[httpx.Request], httpx.Response], credential: Credential | None = None
) -> AzureBlobStorage:
    return AzureBlobStorage(
        "azure", ENTRA, transport=httpx.MockTransport(answer), credential=credential or Credential()
    )


def by_key(outcomes: dict[str, tuple[int, str | None]]) -> Callable[[httpx.Request], httpx.Response]:
    """A batch endpoint answering each sub-request by its blob's name (202 unless named)."""

    def answer(request: httpx.Request) -> httpx.Response:
        names = [name for name, _ in SUB_REQUEST.findall(request.content.decode())]
        return batch_reply([outcomes.get(name, (202, None)) for name in names])

    return answer


def delete(backend: AzureBlobStorage, keys: list[str]) -> ChunkResult:
    async def go() -> ChunkResult:
        try:
            return await backend.delete(keys)
        finally:
            await backend.aclose()

    return run(go())


def test_held_blobs_are_held_not_failed_and_snapshots_fail_for_good() -> None:
    result = delete(
        storage(
            by_key(
                {
                    "legal.jpg": (409, "BlobImmutableDueToLegalHold"),
                    "worm.jpg": (409, "BlobImmutableDueToPolicy"),
                    "snap.jpg": (409, "SnapshotsPresent"),
                    "gone.jpg": (404, "BlobNotFound"),
                    "nobucket.jpg": (404, "ContainerNotFound"),
                }
            )
        ),
        ["legal.jpg", "worm.jpg", "snap.jpg", "gone.jpg", "nobucket.jpg", "ok.jpg"],
    )
    assert result.deleted == {"gone.jpg", "ok.jpg"}  # a missing blob counts as deleted
    assert result.failed == {
        "legal.jpg": LEGAL_HOLD,
        "worm.jpg": IMMUTABILITY_POLICY,
        "snap.jpg": "SnapshotsPresent: 409 from the storage",
        "nobucket.jpg": "ContainerNotFound: 404 from the storage",  # no container is no confirmation
    }
    assert result.permanent == {"legal.jpg", "worm.jpg", "snap.jpg"}


def test_a_batch_throttled_in_every_sub_request_is_a_throttled_call_and_one_key_only_fails() -> None:
    with pytest.raises(StorageThrottled):
        delete(storage(by_key(dict.fromkeys(["a.jpg", "b.jpg"], (503, "ServerBusy")))), ["a.jpg", "b.jpg"])
    one = delete(storage(by_key({"a.jpg": (500, "OperationTimedOut")})), ["a.jpg", "b.jpg"])
    assert one.deleted == {"b.jpg"}
    assert one.failed == {"a.jpg": "OperationTimedOut: 500 from the storage"}
    assert not one.permanent  # retried within its budget


@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (503, "ServerBusy", StorageThrottled),
        (500, "OperationTimedOut", StorageThrottled),
        (500, "InternalError", StorageUnavailable),
        (403, "AuthenticationFailed", StorageUnavailable),
    ],
)
def test_a_whole_batch_refused_is_read_as_every_call_is(
    status: int, code: str, raised: type[Exception]
) -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"x-ms-error-code": code}, stream=httpx.ByteStream(b""))

    with pytest.raises(raised) as caught:
        delete(storage(answer), ["a.jpg"])
    assert type(caught.value) is raised


def test_a_chunk_goes_as_batches_of_256_each_sub_request_with_its_own_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return by_key({})(request)

    credential = Credential()
    keys = [f"{i:04d}.jpg" for i in range(600)]
    assert delete(storage(answer, credential), keys).deleted == set(keys)
    assert [len(SUB_REQUEST.findall(request.content.decode())) for request in seen] == [256, 256, 88]
    assert MAX_KEYS_PER_BATCH == 256
    first = seen[0]
    assert first.url.path == "/photos" and first.url.params["comp"] == "batch"
    assert first.headers["authorization"] == "Bearer token-1"
    for _, headers in SUB_REQUEST.findall(first.content.decode()):
        assert "authorization: Bearer token-1\r\n" in headers
        assert "x-ms-date: " in headers
    assert credential.calls == 1  # one token for every call while it is fresh


def test_a_token_near_its_expiry_is_renewed_and_a_credential_failure_is_an_outage() -> None:
    credential = Credential(lifetime=60)  # within the renewal margin: renewed at each use
    backend = storage(by_key({}), credential)
    delete(backend, ["a.jpg"])
    delete(storage(by_key({}), credential), ["a.jpg"])
    assert credential.calls >= 2

    class Refusing:
        def get_token(self, *_scopes: str) -> Any:
            raise RuntimeError("secret-detail-from-the-identity-endpoint")

    broken = AzureBlobStorage(
        "azure", ENTRA, transport=httpx.MockTransport(by_key({})), credential=Refusing()
    )
    with pytest.raises(StorageUnavailable) as caught:
        delete(broken, ["a.jpg"])
    assert str(caught.value) == (
        "storage azure: Microsoft Entra ID credentials could not be had (RuntimeError)"
    )


def test_an_account_key_file_that_is_not_a_key_is_named_never_quoted(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("not base64 at all: s3cr3t!")
    config = AzureBlobStorageConfig.model_validate(
        {**BASE, "auth": "sharedKey", "accountKeyFile": str(key_file)}
    )
    backend = AzureBlobStorage("azure", config, transport=httpx.MockTransport(by_key({})))
    with pytest.raises(StorageUnavailable) as caught:
        delete(backend, ["a.jpg"])
    assert str(caught.value) == f"storage azure: account key file {key_file} does not hold a base64 key"
    key_file.write_text("clé-secrète")  # not ASCII: no base64 either, never an internal error
    with pytest.raises(StorageUnavailable, match="does not hold a base64 key"):
        delete(AzureBlobStorage("azure", config, transport=httpx.MockTransport(by_key({}))), ["a.jpg"])


def test_a_reply_that_breaks_the_contract_leaves_its_keys_failed() -> None:
    def not_multipart(_: httpx.Request) -> httpx.Response:
        return httpx.Response(202, stream=httpx.ByteStream(b"<html>"))

    broken = delete(storage(not_multipart), ["a.jpg"])
    assert broken.deleted == set()
    assert broken.failed == {"a.jpg": "a batch reply that is not multipart/mixed"}

    def one_part_missing(request: httpx.Request) -> httpx.Response:
        return batch_reply([(202, None)])  # for two sub-requests

    partial = delete(storage(one_part_missing), ["a.jpg", "b.jpg"])
    assert partial.deleted == {"a.jpg"}
    assert partial.failed == {"b.jpg": "not confirmed as deleted by the storage"}


@given(st.binary(max_size=400))
def test_any_listing_reply_gives_names_or_a_classified_error(body: bytes) -> None:
    try:
        names, marker = blob_names(body)
    except ReplyBroken:
        return
    assert all(isinstance(name, str) for name in names)
    assert isinstance(marker, str)


def test_a_listing_page_gives_its_names_and_the_next_marker() -> None:
    page = (
        b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="photos">'
        b"<Prefix>t/a/</Prefix><Blobs><Blob><Name>t/a/1.jpg</Name><Properties/></Blob>"
        b"<Blob><Name>t/a/2 &amp; 3.jpg</Name></Blob></Blobs>"
        b"<NextMarker>2!abc</NextMarker></EnumerationResults>"
    )
    assert blob_names(page) == (["t/a/1.jpg", "t/a/2 & 3.jpg"], "2!abc")
    with pytest.raises(ReplyBroken, match="document type"):
        blob_names(b'<!DOCTYPE x [<!ENTITY a "b">]><EnumerationResults/>')


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"auth": "sharedKey"}, "auth: sharedKey needs accountKeyFile"),
        ({"endpoint": "http://127.0.0.1:10000/devstoreaccount1"}, "sends the credentials in cleartext"),
        ({"account": "Photo-Store"}, "String should match pattern"),
        ({"container": "photos--2023"}, "String should match pattern"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_at_startup(
    changes: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        AzureBlobStorageConfig.model_validate({**BASE, **changes})


def test_the_erasure_horizon_is_the_soft_delete_unless_declared() -> None:
    horizon = ENTRA.erasure_horizon()
    assert horizon is not None
    assert horizon.recoverable_for_seconds == 7 * 86_400
    declared = AzureBlobStorageConfig.model_validate({**BASE, "erasure": {"recoverableForSeconds": 0}})
    assert declared.erasure_horizon() == declared.erasure
