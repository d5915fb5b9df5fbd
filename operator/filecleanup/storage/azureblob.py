"""Layer storage. An Azure Blob Storage container, natively (``type: azureblob``).

- **Deletes** go as Blob Batch requests (``POST <container>?restype=container&comp=batch``,
  multipart/mixed) of at most 256 ``DELETE`` sub-requests, one per key, each authorized on its own;
  each sub-response is that key's outcome:
  - 2xx, and 404 ``BlobNotFound`` (a missing blob counts as deleted), are deleted;
  - 409 ``BlobImmutableDueToLegalHold`` and ``BlobImmutableDueToPolicy`` are held (storage/holds.py):
    kept lawfully, waited for, never failed for good;
  - 403 (``AuthorizationPermissionMismatch``, ``AuthorizationFailure``) and 409 ``SnapshotsPresent``
    (a blob with snapshots, unless ``deleteSnapshots``) are refused for good;
  - 503 ``ServerBusy`` and 500 ``OperationTimedOut`` are Azure's throttling: a batch whose every
    sub-response says so is a throttled call (the adaptive limit is cut, no key's retry is spent);
    otherwise they, and anything else, fail their key within its budget.
  The whole batch's own status is read as every call's is (storage/transport.py), except that a 500
  ``OperationTimedOut`` is throttling there too.
- **A dry run** asks for each blob's properties (``HEAD``: 200 exists, 404 missing, 403 forbidden).
- **Manifests and reports** are read with ``x-ms-range``, pinned to the ETag first read (``If-Match``),
  and written as block blobs (``PUT``).
- **A prefix** is listed with List Blobs pages (``prefix``, ``marker``).
- **Credentials**: ``sharedKey``: every request, and every sub-request, signed with the account key
  (HMAC-SHA256), read from ``accountKeyFile`` and read again when the file changes; ``entraId``: bearer
  tokens from azure-identity's default chain (AKS workload identity, a managed identity, the
  environment), for tokens only, refreshed off the event loop before they expire.

Soft delete is Azure's own: a deleted blob stays recoverable for the account's soft-delete retention,
which the storage's erasure horizon says (api/config.py). With blob versioning on, Azure keeps each
deleted blob's earlier versions as versions, which this backend does not delete.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree as ET

import httpx

from filecleanup.api import redaction
from filecleanup.api.config import AzureBlobStorageConfig
from filecleanup.storage import holds, multipart
from filecleanup.storage.base import ChunkResult, ExistsResult, ObjectPart, chunk_outcome
from filecleanup.storage.errors import (
    ErrorClasses,
    ReplyBroken,
    StorageThrottled,
    StorageUnavailable,
)
from filecleanup.storage.secret_file import SecretFile
from filecleanup.storage.transport import (
    OBJECT_REPLY_SLACK,
    BatchDeleteTransport,
    Reply,
    check_each,
    check_status,
    object_part,
    version_condition,
)

MAX_KEYS_PER_BATCH = 256  # Blob Batch's limit on sub-requests per batch
API_VERSION = "2025-01-05"
TOKEN_SCOPE = "https://storage.azure.com/.default"  # noqa: S105  (a scope's name, not a secret)
TOKEN_REFRESH_MARGIN_SECONDS = 300.0  # a token this close to its expiry is renewed before use
AZURE_PERMANENT = frozenset({"AuthorizationPermissionMismatch", "AuthorizationFailure", "SnapshotsPresent"})
THROTTLING_CODES = frozenset({"ServerBusy", "OperationTimedOut"})
LEGAL_HOLD_CODE = "BlobImmutableDueToLegalHold"
POLICY_CODE = "BlobImmutableDueToPolicy"
IMMUTABILITY_POLICY = f"{holds.HELD_PREFIX}immutability policy"
CONTENT_ID = re.compile(r"^([0-9]{1,4})$")
ERROR_CODE = re.compile(r"^[A-Za-z]{1,64}$")
LIST_REPLY_LIMIT = 16 * 1024 * 1024  # a page of 5,000 blobs' names and properties
OBJECT_REPLY_STATUSES = frozenset(
    {HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE}
)
# The standard headers a SharedKey signature covers, in its order (Authorize with Shared Key).
SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def shared_key_signature(
    key: bytes, account: str, method: str, path: str, *, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """The SharedKey signature of a request: ``path`` as sent (encoded), ``query`` decoded, ``headers``
    with lower-case names."""
    standard = [headers.get(name, "") for name in SIGNED_HEADERS]
    if headers.get("content-length") == "0":
        standard[SIGNED_HEADERS.index("content-length")] = ""  # as the service signs it since 2015-02-21
    canonical_headers = "".join(
        f"{name}:{' '.join(value.split())}\n"
        for name, value in sorted(headers.items())
        if name.startswith("x-ms-")
    )
    resource = f"/{account}{path}" + "".join(
        f"\n{name.lower()}:{value}" for name, value in sorted(query.items())
    )
    to_sign = "\n".join([method, *standard]) + "\n" + canonical_headers + resource
    return base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()


def error_code(reply_headers: Mapping[str, str]) -> str | None:
    """The storage's error code (``x-ms-error-code``), if it is one: a word, nothing else."""
    code = reply_headers.get("x-ms-error-code", "").strip()
    return code if ERROR_CODE.fullmatch(code) else None


def key_outcome(reply: multipart.SubReply) -> tuple[bool, str, str | None]:
    """(deleted, error, code) for one sub-response."""
    code = error_code(reply.headers)
    if HTTPStatus.OK <= reply.status < HTTPStatus.MULTIPLE_CHOICES:
        return True, "", None
    if reply.status == HTTPStatus.NOT_FOUND and code in {None, "BlobNotFound"}:
        return True, "", None
    if code == LEGAL_HOLD_CODE:
        return False, holds.LEGAL_HOLD, code
    if code == POLICY_CODE:
        return False, IMMUTABILITY_POLICY, code
    if code is not None:
        return False, f"{code}: {reply.status} from the storage", code
    return False, f"HTTP {reply.status} from the storage", None


def is_throttling(reply: multipart.SubReply) -> bool:
    return error_code(reply.headers) in THROTTLING_CODES


def blob_names(body: bytes) -> tuple[list[str], str]:
    """A List Blobs page: its blobs' names, and the marker of the next page ('' for the last one).
    Raises :class:`ReplyBroken` for anything else."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ReplyBroken("listing blobs: the reply declares a document type")  # entities could expand
    try:
        root = ET.fromstring(body)  # noqa: S314  (no DTD, bounded size: see above and the transport)
    except (ET.ParseError, ValueError, LookupError) as error:
        raise ReplyBroken("listing blobs: the reply is not XML") from error
    if root.tag != "EnumerationResults":
        raise ReplyBroken("listing blobs: the reply is not a listing")
    names = [name.text or "" for name in root.iterfind("Blobs/Blob/Name")]
    return names, (root.findtext("NextMarker") or "")


# Adds the date and the authorization to a request's headers: (method, path, query, headers).
Authorize = Callable[[str, str, Mapping[str, str], Mapping[str, str]], dict[str, str]]


class TokenCredential(Protocol):
    """What azure-identity's credentials offer: a token and its expiry, for the scopes."""

    def get_token(self, *scopes: str) -> Any: ...


def account_key(text: str) -> bytes:
    """An account key file's key: base64, on one line."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as error:  # binascii.Error, or a character that is not ASCII
        raise ValueError("does not hold a base64 key") from error


class AzureBlobStorage:
    """A container (under ``keyPrefix``): it deletes in batches, holds whole objects for manifests,
    checks existence for dry runs and lists prefixes (storage/base.py's capabilities)."""

    max_keys_per_call: int | None = None  # a chunk goes as batches of MAX_KEYS_PER_BATCH

    def __init__(
        self,
        name: str,
        config: AzureBlobStorageConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        credential: TokenCredential | None = None,
    ) -> None:
        """``credential`` replaces azure-identity's default chain (with ``auth: entraId``)."""
        self.name = name
        self._config = config
        endpoint = config.blob_endpoint()
        self._origin = endpoint.removesuffix(urlsplit(endpoint).path)
        self._container_path = f"{urlsplit(endpoint).path}/{config.container}"
        self._transport = BatchDeleteTransport(name, config, transport=transport)
        self._classes = ErrorClasses.configured(
            AZURE_PERMANENT, config.permanent_errors, config.transient_errors
        )
        self._account_key = (
            SecretFile(name, config.account_key_file, "account key file", account_key)
            if config.account_key_file is not None
            else None
        )
        self._credential = credential
        self._token = ""
        self._token_expires = 0.0
        self._lock = asyncio.Lock()

    async def _authorizer(self) -> Authorize:
        """What authorizes requests: the account key or the bearer token, had once for all the requests
        it is asked for (a batch's sub-requests). It adds the date and the authorization to a request's
        ``headers`` (lower-case names)."""
        date = email.utils.formatdate(usegmt=True)
        if self._account_key is not None:
            key, account = self._account_key.value(), self._config.account

            def shared_key(
                method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
            ) -> dict[str, str]:
                signed = {"x-ms-date": date, **headers}
                signature = shared_key_signature(key, account, method, path, query=query, headers=signed)
                return {**signed, "authorization": f"SharedKey {account}:{signature}"}

            return shared_key
        bearer = f"Bearer {await self._bearer_token()}"

        def token(
            method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
        ) -> dict[str, str]:
            del method, path, query  # a bearer token is the same for every request
            return {"x-ms-date": date, **headers, "authorization": bearer}

        return token

    async def _bearer_token(self) -> str:
        async with (
            self._lock
        ):  # one refresh at a time, off the event loop (it may call the identity endpoint)
            if time.time() < self._token_expires - TOKEN_REFRESH_MARGIN_SECONDS:
                return self._token
            try:
                token, expires = await asyncio.to_thread(self._fresh_token)
            except Exception as error:  # azure-identity raises many kinds; the kind is enough
                raise StorageUnavailable(
                    f"storage {self.name}: Microsoft Entra ID credentials could not be had "
                    f"({type(error).__name__})"
                ) from error
            redaction.register(token)
            self._token, self._token_expires = token, expires
            return token

    def _fresh_token(self) -> tuple[str, float]:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415  (only entraId needs it)

            self._credential = DefaultAzureCredential()
        access = self._credential.get_token(TOKEN_SCOPE)
        return str(access.token), float(access.expires_on)

    async def _request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The URL and the signed headers of a call to ``path`` (encoded) with ``query`` (decoded)."""
        query = dict(query or {})
        url = self._origin + path
        if query:
            url += "?" + "&".join(f"{name}={quote(value, safe='')}" for name, value in query.items())
        authorize = await self._authorizer()
        return url, authorize(method, path, query, {"x-ms-version": API_VERSION, **(headers or {})})

    def _blob_path(self, key: str) -> str:
        return f"{self._container_path}/{quote(self._config.key_prefix + key)}"

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        return await chunk_outcome(keys, self._delete(keys))

    async def _delete(self, keys: Sequence[str]) -> ChunkResult:
        return await multipart.delete_in_batches(
            keys, MAX_KEYS_PER_BATCH, self._batch, key_outcome, self._classes
        )

    async def _batch(self, keys: Sequence[str]) -> dict[int, multipart.SubReply]:
        """One Blob Batch of DELETEs, its sub-responses by index; raises for a throttled or failed call."""
        extra = {"x-ms-delete-snapshots": "include"} if self._config.delete_snapshots else {}
        authorize = await self._authorizer()
        requests = []
        for key in keys:
            path = self._blob_path(key)
            headers = authorize("DELETE", path, {}, {"content-length": "0", **extra})
            requests.append(
                f"DELETE {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers.items())
            )
        boundary, body = multipart.batch_body(requests, "{index}")
        url, headers = await self._request(
            "POST",
            self._container_path,
            {"restype": "container", "comp": "batch"},
            {"content-type": f"multipart/mixed; boundary={boundary}", "content-length": str(len(body))},
        )
        reply = await self._transport.call("POST", url, keys, content=body, headers=headers)
        self._check(reply)
        replies = multipart.sub_replies(
            reply.headers.get("Content-Type", ""), reply.body, len(keys), CONTENT_ID
        )
        if replies and len(replies) == len(keys) and all(map(is_throttling, replies.values())):
            raise StorageThrottled(
                f"storage {self.name} answered {next(iter(replies.values())).status} to every delete"
            )
        return replies

    def _check(self, reply: Reply) -> None:
        """A whole call's status, read as every call's is; a 500 OperationTimedOut is throttling."""
        code = error_code(reply.headers)  # httpx's headers: read by any case of the name
        if code in THROTTLING_CODES and reply.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise StorageThrottled(f"storage {self.name} answered {reply.status} {code}")
        if reply.status == HTTPStatus.ACCEPTED:  # a batch's success
            return
        check_status(self.name, reply, code or "")

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """A dry run's check: each blob's properties (200, 404, 403); any other answer leaves the key
        unknown, and an outage or throttling raises as a delete does."""

        async def properties(key: str) -> Reply:
            url, headers = await self._request("HEAD", self._blob_path(key))
            return await self._transport.fetch("HEAD", url, OBJECT_REPLY_SLACK, headers=headers)

        return await check_each(self.name, keys, properties, lambda reply: error_code(reply.headers) or "")

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """List Blobs under ``keyPrefix`` + ``prefix``, a page at a time, without ``keyPrefix``."""
        full = self._config.key_prefix + prefix
        marker = ""
        while True:
            query = {
                "restype": "container",
                "comp": "list",
                "prefix": full,
                **({"marker": marker} if marker else {}),
            }
            url, headers = await self._request("GET", self._container_path, query)
            reply = await self._transport.fetch("GET", url, LIST_REPLY_LIMIT, headers=headers)
            self._check(reply)
            names, marker = blob_names(reply.body)
            yield [name.removeprefix(self._config.key_prefix) for name in names if name.startswith(full)]
            if not marker:
                return

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """``size`` bytes from ``offset``, pinned to ``version`` (the blob's ETag) when given."""
        range_header = {"x-ms-range": f"bytes={offset}-{offset + size - 1}"}
        conditions = {name.lower(): value for name, value in version_condition(version).items()}
        url, headers = await self._request(
            "GET", self._blob_path(key), headers={**range_header, **conditions}
        )
        reply = await self._transport.fetch_object(
            "GET", url, key, size + OBJECT_REPLY_SLACK, accepted=OBJECT_REPLY_STATUSES, headers=headers
        )
        return object_part(key, reply, offset, size, version)

    async def write(self, key: str, data: bytes) -> None:
        url, headers = await self._request(
            "PUT",
            self._blob_path(key),
            headers={
                "x-ms-blob-type": "BlockBlob",
                "content-type": "text/plain; charset=utf-8",
                "content-length": str(len(data)),
            },
        )
        await self._transport.fetch_object(
            "PUT",
            url,
            key,
            OBJECT_REPLY_SLACK,
            accepted=frozenset({HTTPStatus.CREATED}),
            content=data,
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()
