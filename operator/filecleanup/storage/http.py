"""A storage behind our HTTP contract: ``POST <url>`` with ``{"keys": [...]}``.

The reply is 200 with ``{"deleted": [...], "errors": [{"key": ..., "message": ..., "code": ...}]}``
(``code`` optional: it classifies the error as permanent or transient, storage/errors.py); a missing key
counts as deleted (deletes are idempotent). Any reply, whatever its bytes, becomes a classified result
(:func:`interpret`): only a requested key the reply lists under ``deleted`` counts as deleted.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from filecleanup import redaction
from filecleanup.config import HttpStorageConfig
from filecleanup.storage.base import (
    ChunkResult,
    ExistsResult,
    ObjectPart,
    StorageThrottled,
    StorageUnavailable,
)
from filecleanup.storage.errors import HTTP_PERMANENT, ErrorClasses
from filecleanup.storage.transport import (
    OBJECT_REPLY_SLACK,
    BatchDeleteTransport,
    CallFailed,
    Reply,
    StatusClass,
    classify_status,
    object_part,
    refused_call,
    reply_limit,
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


def answered(storage: str, reply: Reply) -> bool:
    """Whether the storage answered the call (200). Raises :class:`StorageThrottled` for overload and
    :class:`StorageUnavailable` for refused credentials, which are not the keys' fault; any other
    status is this call's failure (False)."""
    match classify_status(reply.status):
        case StatusClass.OVERLOADED:
            raise refused_call(StorageThrottled, storage, reply)
        case StatusClass.CREDENTIALS_REFUSED:
            raise StorageUnavailable(f"storage {storage} rejected the credentials ({reply.status})")
        case StatusClass.SERVER_ERROR | StatusClass.REFUSED:
            return False
        case StatusClass.OK:
            return True


def interpret_exists(storage: str, keys: Sequence[str], reply: Reply) -> ExistsResult:
    """What a reply of ``dryRunUrl`` says about the keys: those it lists under ``existing``,
    ``missing`` or ``forbidden``, the rest unknown. Overload and refused credentials raise, as for a
    delete; any other failed or malformed reply leaves every key unknown."""
    if not answered(storage, reply):
        return ExistsResult.unknown()
    try:
        parsed = _ExistsReply.model_validate_json(reply.body)
    except ValidationError:
        return ExistsResult.unknown()
    return ExistsResult.from_reply(keys, parsed.existing, parsed.missing, parsed.forbidden)


def interpret(
    storage: str, keys: Sequence[str], reply: Reply, classes: ErrorClasses = DEFAULT_CLASSES
) -> ChunkResult:
    """What a reply means for the requested keys. Raises :class:`StorageThrottled` for overload and
    :class:`StorageUnavailable` for refused credentials, which are not the keys' fault."""
    if not answered(storage, reply):
        return ChunkResult.all_failed(keys, f"storage answered HTTP {reply.status}")
    try:
        parsed = _Reply.model_validate_json(reply.body)
    except ValidationError as error:
        return ChunkResult.all_failed(keys, f"the reply breaks the contract: {contract_breach(error)}")
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


class TokenFile:
    """A bearer token read from a mounted Secret, re-read when the file changes (a rotated Secret takes
    effect), and checked when it is read: a token that could break the request's headers is refused."""

    def __init__(self, storage: str, path: Path) -> None:
        self._storage = storage
        self._path = path
        self._mtime_ns = -1
        self._token = ""

    def header(self) -> dict[str, str]:
        try:
            mtime_ns = self._path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                token = self._path.read_text().rstrip("\r\n")
                redaction.register(token)
                if not BEARER_TOKEN.fullmatch(token):
                    raise StorageUnavailable(
                        f"storage {self._storage}: token file {self._path} does not hold a bearer token "
                        "(RFC 6750: letters, digits and -._~+/, then '=' padding, on one line)"
                    )
                self._token, self._mtime_ns = token, mtime_ns
        except (OSError, UnicodeDecodeError) as error:
            reason = (
                errno.errorcode.get(error.errno or 0, "unreadable")
                if isinstance(error, OSError)
                else "not UTF-8"
            )
            raise StorageUnavailable(
                f"storage {self._storage}: cannot read token file {self._path} ({reason})"
            ) from error
        return {"Authorization": f"Bearer {self._token}"}


class HttpStorage:
    max_keys_per_call: int | None = None

    def __init__(
        self, name: str, config: HttpStorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = name
        self._url = str(config.url)
        self._objects_url = str(config.objects_url) if config.objects_url else None
        self._dry_run_url = str(config.dry_run_url) if config.dry_run_url else None
        self.checks_existence = self._dry_run_url is not None
        self.holds_manifests = self._objects_url is not None
        self._token = TokenFile(name, config.token_file) if config.token_file else None
        self._transport = BatchDeleteTransport(name, config, transport=transport)
        self._classes = ErrorClasses.configured(
            HTTP_PERMANENT, config.permanent_errors, config.transient_errors
        )

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        headers = self._authorization()
        reply = await self._transport.call(
            "POST", self._url, keys, json={"keys": list(keys)}, headers=headers
        )
        return reply if isinstance(reply, ChunkResult) else interpret(self.name, keys, reply, self._classes)

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """``POST dryRunUrl`` with ``{"keys": [...]}``, answered ``{"existing": [...], "missing": [...],
        "forbidden": [...]}`` (forbidden optional). A separate URL, never the delete URL: a storage that
        ignored a dry-run flag there would delete the keys. Without dryRunUrl every key is unknown."""
        if self._dry_run_url is None:
            return ExistsResult.unknown()
        headers = self._authorization()
        try:
            reply = await self._transport.fetch(
                "POST", self._dry_run_url, reply_limit(keys), json={"keys": list(keys)}, headers=headers
            )
        except CallFailed:
            return ExistsResult.unknown()
        return interpret_exists(self.name, keys, reply)

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
        if self._objects_url is None:
            raise StorageUnavailable(f"storage {self.name} has no objectsUrl: it holds no manifests")
        headers = {**self._authorization(), **request.pop("headers", {})}
        url = self._objects_url + quote(key, safe="/-_.~")
        return await self._transport.fetch_object(
            method, url, key, limit, accepted=OBJECT_REPLY_STATUSES, headers=headers, **request
        )

    def _authorization(self) -> dict[str, str]:
        """The bearer token's header, read from tokenFile as it is now; none without a token."""
        return self._token.header() if self._token else {}

    async def aclose(self) -> None:
        await self._transport.aclose()
