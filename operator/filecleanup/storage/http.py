"""The design note's storage server: ``POST <url>`` with ``{"keys": [...]}``.

The reply is 200 with ``{"deleted": [...], "errors": [{"key": ..., "message": ...}]}``; a missing key
counts as deleted (deletes are idempotent).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path

import httpx
from pydantic import BaseModel, ValidationError

from filecleanup.config import HttpStorageConfig
from filecleanup.storage.base import ChunkResult, StorageUnavailable
from filecleanup.storage.transport import BatchDeleteTransport

UNAVAILABLE_STATUSES = {HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS}
# Bad credentials are the operator's problem, not the keys': wait for them to be fixed.
CREDENTIAL_STATUSES = {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}


class _KeyError(BaseModel):
    key: str
    message: str = ""


class _Reply(BaseModel):
    deleted: list[str]
    errors: list[_KeyError] = []


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _TokenFile:
    """A bearer token re-read when its file changes, so that a rotated Secret takes effect."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime_ns = -1
        self._token = ""

    def header(self) -> dict[str, str]:
        mtime_ns = self._path.stat().st_mtime_ns
        if mtime_ns != self._mtime_ns:
            self._token = self._path.read_text().strip()
            self._mtime_ns = mtime_ns
        return {"Authorization": f"Bearer {self._token}"}


class HttpStorage:
    max_keys_per_call: int | None = None

    def __init__(self, name: str, config: HttpStorageConfig) -> None:
        self.name = name
        self._url = str(config.url)
        self._token = _TokenFile(config.token_file) if config.token_file else None
        self._transport = BatchDeleteTransport(name, config)

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        headers = self._token.header() if self._token else {}
        reply = await self._transport.post(self._url, keys, json={"keys": list(keys)}, headers=headers)
        return reply if isinstance(reply, ChunkResult) else self._result(keys, reply)

    def _result(self, keys: Sequence[str], reply: httpx.Response) -> ChunkResult:
        if reply.status_code in UNAVAILABLE_STATUSES:
            raise StorageUnavailable(
                f"storage {self.name} answered {reply.status_code}",
                retry_after=parse_retry_after(reply.headers.get("Retry-After")),
            )
        if reply.status_code in CREDENTIAL_STATUSES:
            raise StorageUnavailable(f"storage {self.name} rejected the credentials ({reply.status_code})")
        if reply.status_code != HTTPStatus.OK:
            return ChunkResult.all_failed(keys, f"storage answered HTTP {reply.status_code}")
        try:
            parsed = _Reply.model_validate_json(reply.content)
        except ValidationError as error:
            return ChunkResult.all_failed(keys, f"reply breaks the contract: {_first_line(error)}")
        errors = {item.key: item.message for item in parsed.errors}
        return ChunkResult.from_reply(keys, parsed.deleted, errors)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200]
