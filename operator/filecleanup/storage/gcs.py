"""Layer storage. A Google Cloud Storage bucket through its JSON API, natively (``type: gcs``).

- **Deletes** go as JSON-API batch requests (``POST /batch/storage/v1``, multipart/mixed) of at most
  100 ``DELETE`` sub-requests, one per key; each sub-response is that key's outcome: 2xx and 404 (a
  missing object counts as deleted) are deleted, 403 is refused for good (``AccessDenied``), 429 and
  5xx are transient (``RateLimited``, ``ServerError``), anything else failed with its status. The whole
  batch's own status is read as every call's is (429 and 503 throttled, another 5xx or 401/403 an
  outage); a sub-response that is not there, or that cannot be read, leaves its key failed.
- **A dry run** asks for each object's metadata (200 exists, 404 missing, 403 forbidden).
- **Manifests and reports** are read with ``alt=media`` and a Range, pinned to the generation first
  read (``ifGenerationMatch``), and written with a media upload.
- **A prefix** is listed with ``objects.list`` pages (``prefix``, ``pageToken``).
- **Credentials**: the storage's ``credentialsFile`` (a service account key or an external-account
  file, mounted from a Secret), else Application Default Credentials (a GKE Workload Identity, the
  metadata server), through google-auth, for tokens only, refreshed off the event loop; or none
  (``auth: none``), for an emulator.

Soft delete is GCS's own: a deleted object stays recoverable for the bucket's soft-delete retention (7
days by default), which the storage's erasure horizon says (api/config.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from filecleanup.api import redaction
from filecleanup.api.config import GcsStorageConfig
from filecleanup.storage import multipart
from filecleanup.storage.base import ChunkResult, ExistsResult, ObjectPart, chunk_outcome
from filecleanup.storage.errors import (
    ErrorClasses,
    ObjectChanged,
    ReplyBroken,
    StorageUnavailable,
)
from filecleanup.storage.transport import (
    OBJECT_REPLY_SLACK,
    BatchDeleteTransport,
    Reply,
    check_each,
    check_status,
)

MAX_KEYS_PER_BATCH = 100  # the JSON API's limit on sub-requests per batch
GCS_PERMANENT = frozenset({"AccessDenied"})
DEFAULT_CLASSES = ErrorClasses(GCS_PERMANENT)
CONTENT_ID = re.compile(r"^<response-([0-9]{1,4})>$")
LIST_REPLY_LIMIT = 16 * 1024 * 1024  # a page of 1,000 objects' metadata
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
OBJECT_REPLY_STATUSES = frozenset(
    {HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE}
)


def delete_requests(bucket: str, names: Sequence[str]) -> list[str]:
    """One DELETE sub-request per object name."""
    return [
        f"DELETE /storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')} HTTP/1.1\r\n"
        "Content-Length: 0\r\nAccept: application/json\r\n"
        for name in names
    ]


def key_outcome(reply: multipart.SubReply) -> multipart.KeyOutcome:
    """(deleted, error, code) for one sub-response, by its status."""
    status = reply.status
    if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES or status == HTTPStatus.NOT_FOUND:
        return True, "", None
    if status == HTTPStatus.FORBIDDEN:
        return False, "AccessDenied: 403 from the storage", "AccessDenied"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return False, "RateLimited: 429 from the storage", "RateLimited"
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return False, f"ServerError: {status} from the storage", "ServerError"
    return False, f"HTTP {status} from the storage", None


class _Listing(BaseModel):
    class _Item(BaseModel):
        name: str

    items: list[_Item] = []
    nextPageToken: str | None = None  # noqa: N815  (the API's name)


class _Metadata(BaseModel):
    generation: str


class GcsStorage:
    """A bucket (under ``keyPrefix``): it deletes in batches, holds whole objects for manifests,
    checks existence for dry runs and lists prefixes (storage/base.py's capabilities)."""

    max_keys_per_call: int | None = None  # a chunk goes as batches of MAX_KEYS_PER_BATCH

    def __init__(
        self, name: str, config: GcsStorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = name
        self._config = config
        self._base = str(config.endpoint).rstrip("/")
        self._bucket = f"{self._base}/storage/v1/b/{quote(config.bucket, safe='')}"
        self._transport = BatchDeleteTransport(name, config, transport=transport)
        self._classes = ErrorClasses.configured(
            GCS_PERMANENT, config.permanent_errors, config.transient_errors
        )
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    async def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._config.auth == "adc":
            headers["Authorization"] = f"Bearer {await self._token()}"
        return headers

    async def _token(self) -> str:
        async with self._lock:  # one refresh at a time, off the event loop (it may call the metadata server)
            try:
                token = await asyncio.to_thread(self._fresh_token)
            except Exception as error:  # google-auth raises many kinds; the kind is enough
                raise StorageUnavailable(
                    f"storage {self.name}: Google credentials could not be had ({type(error).__name__})"
                ) from error
        redaction.register(token)
        return token

    def _fresh_token(self) -> str:
        import google.auth  # noqa: PLC0415  (only a gcs storage with ADC needs it)
        import google.auth.transport.urllib3  # noqa: PLC0415
        import urllib3  # noqa: PLC0415

        if self._credentials is None:
            if self._config.credentials_file is not None:
                self._credentials, _ = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
                    str(self._config.credentials_file), scopes=[SCOPE]
                )
            else:
                self._credentials, _ = google.auth.default(scopes=[SCOPE])
        if not self._credentials.valid:
            request = google.auth.transport.urllib3.Request(urllib3.PoolManager())  # type: ignore[no-untyped-call]
            self._credentials.refresh(request)
        return str(self._credentials.token)

    def _name(self, key: str) -> str:
        return self._config.key_prefix + key

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        return await chunk_outcome(keys, self._delete(keys))

    async def _delete(self, keys: Sequence[str]) -> ChunkResult:
        return await multipart.delete_in_batches(
            keys, MAX_KEYS_PER_BATCH, self._batch, key_outcome, self._classes
        )

    async def _batch(self, keys: Sequence[str]) -> dict[int, multipart.SubReply]:
        """One JSON-API batch of DELETEs, its sub-responses by index; raises for a throttled or failed
        call."""
        boundary, body = multipart.batch_body(
            delete_requests(self._config.bucket, [self._name(key) for key in keys]), "<{index}>"
        )
        headers = await self._headers({"Content-Type": f"multipart/mixed; boundary={boundary}"})
        reply = await self._transport.call(
            "POST", f"{self._base}/batch/storage/v1", keys, content=body, headers=headers
        )
        check_status(self.name, reply)
        return multipart.sub_replies(reply.headers.get("Content-Type", ""), reply.body, len(keys), CONTENT_ID)

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """A dry run's check: an object's metadata per key (200, 404, 403); any other answer leaves the
        key unknown, and an outage or throttling raises as a delete does."""

        async def metadata(key: str) -> Reply:
            return await self._transport.fetch(
                "GET", self._object_url(key), OBJECT_REPLY_SLACK, headers=await self._headers()
            )

        return await check_each(self.name, keys, metadata)

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """``objects.list`` under ``keyPrefix`` + ``prefix``, a page at a time, without ``keyPrefix``."""
        full = self._name(prefix)
        token: str | None = None
        while True:
            params = {
                "prefix": full,
                "fields": "items(name),nextPageToken",
                **({"pageToken": token} if token else {}),
            }
            url = f"{self._bucket}/o?" + "&".join(
                f"{name}={quote(value, safe='')}" for name, value in params.items()
            )
            reply = await self._transport.fetch("GET", url, LIST_REPLY_LIMIT, headers=await self._headers())
            check_status(self.name, reply)
            try:
                page = _Listing.model_validate_json(reply.body)
            except ValidationError as error:
                raise ReplyBroken("listing objects: the reply breaks the contract") from error
            yield [
                item.name.removeprefix(self._config.key_prefix)
                for item in page.items
                if item.name.startswith(full)
            ]
            token = page.nextPageToken
            if not token:
                return

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """Media download with a Range, pinned to ``version`` (the object's generation) when given."""
        if not version:
            version = await self._generation(key)
        url = f"{self._object_url(key)}?alt=media&ifGenerationMatch={quote(version, safe='')}"
        headers = await self._headers({"Range": f"bytes={offset}-{offset + size - 1}"})
        reply = await self._transport.fetch_object(
            "GET", url, key, size + OBJECT_REPLY_SLACK, accepted=OBJECT_REPLY_STATUSES, headers=headers
        )
        return self._part(key, reply, offset, size, version)

    @staticmethod
    def _part(key: str, reply: Reply, offset: int, size: int, version: str) -> ObjectPart:
        if reply.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
            return ObjectPart(b"", version)
        generation = reply.headers.get("x-goog-generation", version)
        if generation != version:
            raise ObjectChanged(key)
        if reply.status == HTTPStatus.PARTIAL_CONTENT:
            return ObjectPart(reply.body, version)
        return ObjectPart(reply.body[offset : offset + size], version)

    async def _generation(self, key: str) -> str:
        reply = await self._transport.fetch_object(
            "GET",
            self._object_url(key),
            key,
            OBJECT_REPLY_SLACK,
            accepted=frozenset({HTTPStatus.OK}),
            headers=await self._headers(),
        )
        try:
            return _Metadata.model_validate_json(reply.body).generation
        except ValidationError as error:
            raise StorageUnavailable(
                f"storage {self.name}: {key!r}: metadata without a generation"
            ) from error

    async def write(self, key: str, data: bytes) -> None:
        bucket, name = quote(self._config.bucket, safe=""), quote(self._name(key), safe="")
        url = f"{self._base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
        headers = await self._headers({"Content-Type": "text/plain; charset=utf-8"})
        await self._transport.fetch_object(
            "POST",
            url,
            key,
            OBJECT_REPLY_SLACK,
            accepted=frozenset({HTTPStatus.OK}),
            content=data,
            headers=headers,
        )

    def _object_url(self, key: str) -> str:
        return f"{self._bucket}/o/{quote(self._name(key), safe='')}"

    async def aclose(self) -> None:
        await self._transport.aclose()
