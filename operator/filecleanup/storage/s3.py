"""S3-compatible storage through DeleteObjects, in quiet mode, over httpx.

httpx carries the calls (the same explicit connect and read timeouts as the HTTP backend, and no
hidden retries: the operator's rounds and back-off are the only retries). botocore supplies only the
standard credential chain and the SigV4 signature; its own retrying client is not used.

Outcomes:
- 200: every key without an ``<Error>`` entry was deleted (quiet mode lists only failures). A key's
  ``InternalError`` or ``SlowDown`` is a retryable key failure; ``AccessDenied`` and any other code
  is recorded with its code and retried in the same way, within the key's retry budget.
- 503 SlowDown, any 5xx, 401/403 for the whole call, a connect failure: storage unavailable.
- Another 4xx, a read timeout, or a reply that is not DeleteObjects XML: the chunk's keys failed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.session import Session

from filecleanup.config import S3StorageConfig
from filecleanup.storage.base import ChunkResult, StorageUnavailable
from filecleanup.storage.http import parse_retry_after
from filecleanup.storage.transport import BatchDeleteTransport

MAX_KEYS_PER_CALL = 1000  # DeleteObjects' own limit
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class DeleteObjectsReplyError(ValueError):
    """A 200 reply that is not DeleteObjects XML."""


def delete_objects_body(keys: Sequence[str]) -> bytes:
    objects = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>{objects}</Delete>'
    ).encode()


def parse_delete_objects_reply(body: bytes) -> dict[str, str]:
    """The per-key errors of a DeleteObjects reply: full key -> "Code: Message"."""
    try:
        # The reply comes from the configured storage; expat refuses entity-expansion bombs.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError as error:
        raise DeleteObjectsReplyError(f"not XML: {error}") from error
    if root.tag.removeprefix(_NS) != "DeleteResult":
        raise DeleteObjectsReplyError(f"expected DeleteResult, got {root.tag.removeprefix(_NS)}")
    errors = {}
    for entry in root.iter(f"{_NS}Error"):
        key = entry.findtext(f"{_NS}Key")
        if key is None:
            raise DeleteObjectsReplyError("an Error without a Key")
        code = entry.findtext(f"{_NS}Code") or "Unknown"
        message = entry.findtext(f"{_NS}Message") or ""
        errors[key] = f"{code}: {message}" if message else code
    return errors


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error reply, for messages; empty if the body is not one."""
    try:
        return ET.fromstring(body).findtext("Code") or ""  # noqa: S314
    except ET.ParseError:
        return ""


class S3Storage:
    max_keys_per_call: int | None = MAX_KEYS_PER_CALL

    def __init__(self, name: str, config: S3StorageConfig) -> None:
        self.name = name
        self._config = config
        self._url = self._delete_url(config)
        self._credentials_source = self._session(config).get_credentials
        self._credentials: Credentials | None = None
        self._credentials_lock = asyncio.Lock()  # resolve the chain once, not once per chunk in flight
        self._transport = BatchDeleteTransport(name, config)

    @staticmethod
    def _session(config: S3StorageConfig) -> Session:
        session = Session(profile=config.profile)
        if config.credentials_file is not None:
            session.set_config_variable("credentials_file", str(config.credentials_file))
        return session

    @staticmethod
    def _delete_url(config: S3StorageConfig) -> str:
        if config.endpoint is None:
            host = f"s3.{config.region}.amazonaws.com"
            scheme = "https"
        else:
            parts = urlsplit(str(config.endpoint))
            host, scheme = parts.netloc, parts.scheme
        path_style = config.addressing_style == "path" or (
            config.addressing_style == "auto" and config.endpoint is not None
        )
        if path_style:
            return f"{scheme}://{host}/{config.bucket}?delete"
        return f"{scheme}://{config.bucket}.{host}/?delete"

    async def _frozen_credentials(self) -> ReadOnlyCredentials:
        # Resolving and refreshing credentials may read files or call STS: never on the event loop.
        async with self._credentials_lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._credentials_source)
            if self._credentials is None:
                raise StorageUnavailable(f"storage {self.name}: no AWS credentials found")
            credentials = self._credentials
        return await asyncio.to_thread(credentials.get_frozen_credentials)

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        prefixed = [self._config.key_prefix + key for key in keys]
        body = delete_objects_body(prefixed)
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={
                "Content-Type": "application/xml",
                "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),  # noqa: S324  (S3 demands it)
            },
        )
        S3SigV4Auth(await self._frozen_credentials(), "s3", self._config.region).add_auth(request)
        headers = dict(request.headers.items())
        reply = await self._transport.post(self._url, keys, content=body, headers=headers)
        return reply if isinstance(reply, ChunkResult) else self._result(keys, reply)

    def _result(self, keys: Sequence[str], reply: httpx.Response) -> ChunkResult:
        status = reply.status_code
        code = error_code(reply.content) if status != HTTPStatus.OK else ""
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR or status in {
            HTTPStatus.UNAUTHORIZED,
            HTTPStatus.FORBIDDEN,
        }:
            raise StorageUnavailable(
                f"storage {self.name} answered {status} {code}".rstrip(),
                retry_after=parse_retry_after(reply.headers.get("Retry-After")),
            )
        if status != HTTPStatus.OK:
            return ChunkResult.all_failed(keys, f"storage answered HTTP {status} {code}".rstrip())
        try:
            errors = parse_delete_objects_reply(reply.content)
        except DeleteObjectsReplyError as error:
            return ChunkResult.all_failed(keys, f"reply breaks the contract: {error}")
        prefix = self._config.key_prefix
        by_key = {
            full.removeprefix(prefix): reason for full, reason in errors.items() if full.startswith(prefix)
        }
        confirmed = [key for key in keys if key not in by_key]
        return ChunkResult.from_reply(keys, confirmed, by_key)

    async def aclose(self) -> None:
        await self._transport.aclose()
