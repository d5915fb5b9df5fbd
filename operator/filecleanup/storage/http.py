"""Layer storage. A storage behind our HTTP contract: ``POST <url>`` with ``{"keys": [...]}``.

The reply is 200 with ``{"deleted": [...], "errors": [{"key": ..., "message": ..., "code": ...}]}``
(``code`` optional: it classifies the error as permanent or transient, storage/errors.py); a missing key
counts as deleted (deletes are idempotent). Any reply, whatever its bytes, becomes a classified result
(:func:`interpret`): only a requested key the reply lists under ``deleted`` counts as deleted. A whole
call's status is read as every S3 call's is (transport.check_status): 429 and 503 throttled; any other
5xx, 401 and 403 an outage; any other status the chunk's failure.

The contract's two optional parts are capabilities (storage/base.py), present as configured:
``dryRunUrl`` makes the storage check existence for dry runs, ``objectsUrl`` makes it hold whole
objects for manifests. :func:`open_http` gives the backend with exactly those.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from filecleanup.api.config import HttpStorageConfig
from filecleanup.storage.base import ChunkResult, ExistsResult, ObjectPart, chunk_outcome
from filecleanup.storage.errors import (
    HTTP_PERMANENT,
    CallFailed,
    ErrorClasses,
    ReplyBroken,
)
from filecleanup.storage.secret_file import SecretFile
from filecleanup.storage.transport import (
    OBJECT_REPLY_SLACK,
    BatchDeleteTransport,
    Reply,
    check_status,
    object_part,
    version_condition,
)

DEFAULT_CLASSES = ErrorClasses(HTTP_PERMANENT)
# RFC 6750's b64token: what a bearer token may hold, so that it can never break a header.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class _KeyError(BaseModel):
    key: str
    message: str = ""
    code: str | None = None  # optional: classifies the error (storage/errors.py); unknown is transient


class _Reply(BaseModel):
    deleted: list[str]
    errors: list[_KeyError] = []


class _ExistsReply(BaseModel):
    existing: list[str]
    missing: list[str]
    forbidden: list[str] = []


def interpret_exists(storage: str, keys: Sequence[str], reply: Reply) -> ExistsResult:
    """What a reply of ``dryRunUrl`` says about the keys: those it lists under ``existing``,
    ``missing`` or ``forbidden``, the rest unknown. A whole-call status is read as for a delete
    (transport.check_status); a reply that breaks the contract raises :class:`ReplyBroken`."""
    check_status(storage, reply)
    try:
        parsed = _ExistsReply.model_validate_json(reply.body)
    except ValidationError as error:
        raise ReplyBroken(f"the reply breaks the contract: {contract_breach(error)}") from error
    return ExistsResult.from_reply(keys, parsed.existing, parsed.missing, parsed.forbidden)


def interpret(
    storage: str, keys: Sequence[str], reply: Reply, classes: ErrorClasses = DEFAULT_CLASSES
) -> ChunkResult:
    """What a reply means for the requested keys. A whole-call status other than 200 raises, as
    transport.check_status reads it (throttled, unavailable, or :class:`CallRefused`), and a reply
    that breaks the contract raises :class:`ReplyBroken`: the chunk's failure (base.chunk_outcome)."""
    check_status(storage, reply)
    try:
        parsed = _Reply.model_validate_json(reply.body)
    except ValidationError as error:
        raise ReplyBroken(f"the reply breaks the contract: {contract_breach(error)}") from error
    errors = {
        item.key: f"{item.code}: {item.message}" if item.code else item.message for item in parsed.errors
    }
    permanent = [item.key for item in parsed.errors if classes.is_permanent(item.code)]
    return ChunkResult.from_reply(keys, parsed.deleted, errors, permanent)


def contract_breach(error: ValidationError) -> str:
    """Where and how a reply broke the contract, without quoting it."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    return f"{first['type']} at {where}"


# What a whole object's GET or PUT may answer: a Range past the end is an empty read, not a failure.
OBJECT_REPLY_STATUSES = frozenset(
    {
        HTTPStatus.OK,
        HTTPStatus.CREATED,
        HTTPStatus.NO_CONTENT,
        HTTPStatus.PARTIAL_CONTENT,
        HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
    }
)


def bearer_token(text: str) -> str:
    """A token file's token: one line of RFC 6750 characters, which can never break a request's headers."""
    token = text.rstrip("\r\n")
    if not BEARER_TOKEN.fullmatch(token):
        raise ValueError(
            "does not hold a bearer token (RFC 6750: letters, digits and -._~+/, then '=' padding, "
            "on one line)"
        )
    return token


class TokenFile(SecretFile[str]):
    """A bearer token read from a mounted Secret (storage/secret_file.py), sent as a header."""

    def __init__(self, storage: str, path: Path) -> None:
        super().__init__(storage, path, "token file", bearer_token)

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value()}"}


class HttpBackend:
    """The contract's one required call, ``POST url``: a storage that deletes, and can do nothing more
    (no dry-run check, no manifests)."""

    max_keys_per_call: int | None = None

    def __init__(
        self, name: str, config: HttpStorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """``transport`` replaces the network (tests give an ``httpx.MockTransport``)."""
        self.name = name
        self._url = str(config.url)
        self._token = TokenFile(name, config.token_file) if config.token_file else None
        self._transport = BatchDeleteTransport(name, config, transport=transport)
        self._classes = ErrorClasses.configured(
            HTTP_PERMANENT, config.permanent_errors, config.transient_errors
        )

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        return await chunk_outcome(keys, self._delete(keys))

    async def _delete(self, keys: Sequence[str]) -> ChunkResult:
        headers = self._authorization()
        reply = await self._transport.call(
            "POST", self._url, keys, json={"keys": list(keys)}, headers=headers
        )
        return interpret(self.name, keys, reply, self._classes)

    def _authorization(self) -> dict[str, str]:
        """The bearer token's header, read from tokenFile as it is now; none without a token."""
        return self._token.header() if self._token else {}

    async def aclose(self) -> None:
        await self._transport.aclose()


class HttpStorage(HttpBackend):
    """An HTTP storage that checks existence for dry runs (storage/base.py's ``ChecksExistence``) at
    its ``dryRunUrl``. :func:`open_http` makes one only with a ``dryRunUrl``; made without one, it
    knows nothing of any key and asks nothing."""

    def __init__(
        self, name: str, config: HttpStorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(name, config, transport=transport)
        self._dry_run_url = str(config.dry_run_url) if config.dry_run_url else None

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """``POST dryRunUrl`` with ``{"keys": [...]}``, answered ``{"existing": [...], "missing": [...],
        "forbidden": [...]}`` (forbidden optional). A separate URL, never the delete URL: a storage that
        ignored a dry-run flag there would delete the keys. A failed call leaves every key unknown;
        an outage raises, as for a delete."""
        if self._dry_run_url is None:
            return ExistsResult.unknown()
        headers = self._authorization()
        try:
            reply = await self._transport.call(
                "POST", self._dry_run_url, keys, json={"keys": list(keys)}, headers=headers
            )
            return interpret_exists(self.name, keys, reply)
        except CallFailed:
            return ExistsResult.unknown()


class HttpObjects(HttpBackend):
    """An HTTP storage that holds whole objects (storage/base.py's ``ObjectStore``) at its
    ``objectsUrl``, for manifests and their reports."""

    def __init__(
        self, name: str, config: HttpStorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if config.objects_url is None:
            raise ValueError(f"storage {name} has no objectsUrl: it holds no objects")
        super().__init__(name, config, transport=transport)
        self._objects_url = str(config.objects_url)

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """``GET objectsUrl + key`` with a Range (a manifest is read a part at a time), and with
        If-Match on the ETag first read where the server gives one."""
        headers = {"Range": f"bytes={offset}-{offset + size - 1}", **version_condition(version)}
        reply = await self._object_call("GET", key, size + OBJECT_REPLY_SLACK, headers=headers)
        return object_part(key, reply, offset, size, version)

    async def write(self, key: str, data: bytes) -> None:
        """``PUT objectsUrl + key``: a failure report, written whole."""
        await self._object_call("PUT", key, OBJECT_REPLY_SLACK, content=data)

    async def _object_call(self, method: str, key: str, limit: int, **request: Any) -> Reply:
        headers = {**self._authorization(), **request.pop("headers", {})}
        url = self._objects_url + quote(key, safe="/-_.~")
        return await self._transport.fetch_object(
            method, url, key, limit, accepted=OBJECT_REPLY_STATUSES, headers=headers, **request
        )


class HttpObjectStorage(HttpObjects, HttpStorage):
    """An HTTP storage with both optional parts of the contract: ``objectsUrl`` and ``dryRunUrl``."""


def open_http(
    name: str, config: HttpStorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> HttpBackend:
    """The HTTP backend with the capabilities its configuration gives, and no others."""
    match config.objects_url is not None, config.dry_run_url is not None:
        case True, True:
            return HttpObjectStorage(name, config, transport=transport)
        case True, False:
            return HttpObjects(name, config, transport=transport)
        case False, True:
            return HttpStorage(name, config, transport=transport)
        case _:
            return HttpBackend(name, config, transport=transport)
