"""Layer storage. S3-compatible storage through DeleteObjects, over httpx.

httpx carries the calls (the transport's timeouts, deadline and reply cap, and no hidden retries: the
operator's rounds and back-off are the only retries). botocore supplies only the standard credential
chain and the SigV4 signature; its own retrying client is not used.

"Deleted" means what it says, so DeleteObjects runs in verbose mode: a key counts as deleted only when
the reply lists it under ``<Deleted>``; silence about a key (or an ``<Error>`` naming some other key)
leaves it failed. On a versioned bucket, a DeleteObjects without version IDs only adds a delete marker
and the data stays: such a key is reported failed ("only a delete marker was added"), unless the
storage sets ``deleteAllVersions``, in which case every version of each key (delete markers included)
is listed with ListObjectVersions and deleted by version ID, and the key counts as deleted when every
one of them is confirmed.

Outcomes:
- 200: per key, as above. A key's ``<Error>`` is recorded with its code; a permanent code
  (``AccessDenied``, ``InvalidObjectName``, ...; storage/errors.py) fails the key for good, any other
  (``InternalError``, ``SlowDown``, ...) is retried within the key's budget.
- Any other status of the whole call, read as the HTTP backend reads it (transport.check_status):
  503 SlowDown or 429 throttled (sent again after the limiter's wait; see storage/limits.py); any other
  5xx and 401/403 an outage (storage unavailable), as is a connect failure; any other status the
  chunk's keys failed.
- A timeout, or a reply that is not the expected XML: the chunk's keys failed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.session import Session

from filecleanup.api import redaction
from filecleanup.api.config import S3StorageConfig
from filecleanup.storage import holds
from filecleanup.storage.base import NOT_CONFIRMED, ChunkResult, ExistsResult, ObjectPart, chunk_outcome
from filecleanup.storage.errors import (
    S3_PERMANENT,
    ErrorClasses,
    ReplyBroken,
    S3ReplyError,
    StorageError,
    StorageUnavailable,
)
from filecleanup.storage.s3_xml import (
    DeleteResult,
    delete_objects_body,
    error_code,
    parse_delete_result,
    parse_list_objects,
    parse_versions,
)
from filecleanup.storage.transport import (
    OBJECT_REPLY_SLACK,
    BatchDeleteTransport,
    Reply,
    check_each,
    check_status,
    object_part,
    version_condition,
)

MAX_KEYS_PER_CALL = 1000  # DeleteObjects' own limit
DEFAULT_CLASSES = ErrorClasses(S3_PERMANENT)
DELETE_MARKER_ONLY = (
    "only a delete marker was added: the bucket is versioned and the data versions remain "
    "(set deleteAllVersions on the storage to delete them)"
)


@dataclass(frozen=True)
class Target:
    """One requested key: its full S3 key (with the storage's prefix) and the versions to delete
    (``[None]``: the current one, without a version ID)."""

    key: str
    full_key: str
    versions: Sequence[str | None]


def read_delete_reply(storage: str, reply: Reply) -> DeleteResult:
    """A DeleteObjects reply, whatever its bytes: the parsed result. Raises for a whole-call status
    other than 200, as transport.check_status reads it, and :class:`ReplyBroken` for a reply that is
    not DeleteResult XML."""
    check_status(storage, reply, error_code(reply.body))
    try:
        return parse_delete_result(reply.body)
    except S3ReplyError as error:
        raise ReplyBroken(f"the reply breaks the contract: {error}") from error


def outcome(
    targets: Sequence[Target],
    result: DeleteResult,
    classes: ErrorClasses = DEFAULT_CLASSES,
    held: Mapping[tuple[str, str | None], str] | None = None,
) -> ChunkResult:
    """A key counts as deleted when every version sent for it is confirmed, and none was only hidden
    by a delete marker; otherwise it failed, with the first reason (permanent if its code is). A
    version the storage ``held`` (Object Lock) makes its key held (storage/holds.py): not retried."""
    confirmed: list[str] = []
    errors: dict[str, str] = {}
    permanent: list[str] = []
    held = held or {}
    for target in targets:
        for version in target.versions:
            sent = (target.full_key, version)
            if sent in held:
                errors[target.key] = held[sent]
                permanent.append(target.key)
            elif sent in result.errors:
                errors[target.key] = result.errors[sent]
                if classes.is_permanent(result.codes.get(sent)):
                    permanent.append(target.key)
            elif sent not in result.deleted and (
                version is None or (target.full_key, version) not in result.deleted_markers
            ):
                errors[target.key] = NOT_CONFIRMED
            elif version is None and result.deleted[sent]:
                errors[target.key] = DELETE_MARKER_ONLY
            else:
                continue
            break
        else:
            confirmed.append(target.key)
    return ChunkResult.from_reply([target.key for target in targets], confirmed, errors, permanent)


ACCESS_DENIED = "AccessDenied"
# A ListObjectsV2 page: 1,000 keys of at most 1,024 bytes, escaped, with their metadata.
MAX_LIST_REPLY_BYTES = 16 * 1024 * 1024


def retain_until(text: str) -> datetime.datetime | None:
    """An Object Lock retain-until date (ISO 8601, as S3 sends it), or None if it is not one."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


# What a GetObject or PutObject may answer: a Range past the end is an empty read, not a failure.
OBJECT_REPLY_STATUSES = frozenset(
    {HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT, HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE}
)


class S3Storage:
    """A bucket (under ``keyPrefix``): it deletes, holds whole objects for manifests, checks
    existence for dry runs and lists versions (storage/base.py's capabilities)."""

    max_keys_per_call: int | None = MAX_KEYS_PER_CALL

    def __init__(
        self, name: str, config: S3StorageConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.name = name
        self._config = config
        self._base = self._bucket_url(config)
        self._credentials_source = self._session(config).get_credentials
        self._credentials: Credentials | None = None
        self._credentials_lock = asyncio.Lock()
        self._transport = BatchDeleteTransport(name, config, transport=transport)
        self._classes = ErrorClasses.configured(
            S3_PERMANENT, config.permanent_errors, config.transient_errors
        )
        # Deletes versions under a GOVERNANCE retention (with the s3:BypassGovernanceRetention right),
        # only where the storage says so; COMPLIANCE retention and legal holds are never bypassed.
        self._bypass = (
            {"x-amz-bypass-governance-retention": "true"} if config.bypass_governance_retention else {}
        )

    @staticmethod
    def _session(config: S3StorageConfig) -> Session:
        session = Session(profile=config.profile)
        if config.credentials_file is not None:
            session.set_config_variable("credentials_file", str(config.credentials_file))
        return session

    @staticmethod
    def _bucket_url(config: S3StorageConfig) -> str:
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
            return f"{scheme}://{host}/{config.bucket}"
        return f"{scheme}://{config.bucket}.{host}"

    async def _frozen_credentials(self) -> ReadOnlyCredentials:
        try:
            frozen = await self._resolve_credentials()
        except Exception as error:  # botocore's chain raises many kinds; the kind is enough
            raise StorageUnavailable(
                f"storage {self.name}: AWS credentials could not be resolved ({type(error).__name__})"
            ) from error
        if frozen is None:
            raise StorageUnavailable(f"storage {self.name}: no AWS credentials found")
        redaction.register(frozen.secret_key)
        redaction.register(frozen.token)
        return frozen

    async def _resolve_credentials(self) -> ReadOnlyCredentials | None:
        # Resolving and refreshing credentials may read files or call STS: never on the event loop.
        async with self._credentials_lock:  # resolve the chain once, not once per chunk in flight
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._credentials_source)
            credentials = self._credentials
        return None if credentials is None else await asyncio.to_thread(credentials.get_frozen_credentials)

    async def _signed(
        self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        headers = {"Content-Type": "application/xml", **(headers or {})}
        if body:
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324  (S3 demands it)
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        S3SigV4Auth(await self._frozen_credentials(), "s3", self._config.region).add_auth(request)
        return dict(request.headers.items())

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        return await chunk_outcome(keys, self._delete(keys))

    async def _delete(self, keys: Sequence[str]) -> ChunkResult:
        prefix = self._config.key_prefix
        if self._config.delete_all_versions:
            listed = await self.versions(keys)
            targets = [Target(key, prefix + key, listed[key]) for key in keys]
        else:
            targets = [Target(key, prefix + key, [None]) for key in keys]
        sent = [(target.full_key, version) for target in targets for version in target.versions]
        merged = DeleteResult()
        for start in range(0, len(sent), MAX_KEYS_PER_CALL):  # versions can outnumber keys
            body = delete_objects_body(sent[start : start + MAX_KEYS_PER_CALL])
            url = f"{self._base}/?delete"
            reply = await self._transport.call(
                "POST", url, keys, content=body, headers=await self._signed("POST", url, body, self._bypass)
            )
            result = read_delete_reply(self.name, reply)
            merged = DeleteResult(
                {**merged.deleted, **result.deleted},
                {**merged.errors, **result.errors},
                {**merged.codes, **result.codes},
                {**merged.deleted_markers, **result.deleted_markers},
            )
        held = await self._locked(merged) if self._config.delete_all_versions else {}
        return outcome(targets, merged, self._classes, held)

    async def _locked(self, result: DeleteResult) -> dict[tuple[str, str | None], str]:
        """The versions refused with AccessDenied that Object Lock holds (a legal hold, a retention
        not yet over), each with its held error: a HeadObject per such version tells. A version that
        cannot be looked at stays as refused."""
        held: dict[tuple[str, str | None], str] = {}
        now = datetime.datetime.now(datetime.UTC)
        for sent, code in result.codes.items():
            full_key, version = sent
            if code != ACCESS_DENIED or version is None:
                continue
            url = f"{self._base}/{quote(full_key, safe='/-_.~')}?versionId={quote(version, safe='')}"
            try:
                reply = await self._transport.fetch(
                    "HEAD", url, OBJECT_REPLY_SLACK, headers=await self._signed("HEAD", url)
                )
            except StorageError:
                continue
            if reply.status != HTTPStatus.OK:
                continue
            legal = reply.headers.get("x-amz-object-lock-legal-hold", "").upper() == "ON"
            until = retain_until(reply.headers.get("x-amz-object-lock-retain-until-date", ""))
            if legal or (until is not None and until > now):
                mode = reply.headers.get("x-amz-object-lock-mode", "")[:20] or None
                held[sent] = holds.held_error(legal_hold=legal, mode=mode, until=until)
        return held

    async def versions(self, keys: Sequence[str]) -> Mapping[str, Sequence[str]]:
        """Each key's version IDs, data versions and delete markers (ListObjectVersions, a listing per
        key, each page read up to the most a reply about ``keys`` may hold); a key with none has
        nothing left to delete. Raises as a delete does."""
        listed: dict[str, Sequence[str]] = {}
        for key in keys:
            full_key = self._config.key_prefix + key
            versions: list[str] = []
            markers: tuple[str | None, str | None] = (None, None)
            while True:
                query = {
                    "versions": "",
                    "prefix": full_key,
                    "key-marker": markers[0],
                    "version-id-marker": markers[1],
                }
                url = f"{self._base}/?" + "&".join(
                    name if value == "" else f"{name}={quote(value, safe='')}"
                    for name, value in query.items()
                    if value is not None
                )
                reply = await self._transport.call("GET", url, keys, headers=await self._signed("GET", url))
                check_status(self.name, reply, error_code(reply.body))
                try:
                    page, *markers_found = parse_versions(reply.body, full_key)
                except S3ReplyError as error:
                    raise ReplyBroken(f"listing versions: the reply breaks the contract: {error}") from error
                versions += page
                markers = (markers_found[0], markers_found[1])
                if markers[0] is None:
                    break
            listed[key] = versions
        return listed

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """ListObjectsV2 under ``keyPrefix`` + ``prefix``, a page (at most 1,000 keys) at a time, in
        the store's order; keys come back without the storage's ``keyPrefix``."""
        full = self._config.key_prefix + prefix
        token: str | None = None
        while True:
            query = {
                "list-type": "2",
                "prefix": full,
                "max-keys": str(MAX_KEYS_PER_CALL),
                "continuation-token": token,
            }
            url = f"{self._base}/?" + "&".join(
                f"{name}={quote(value, safe='')}" for name, value in query.items() if value is not None
            )
            reply = await self._transport.fetch(
                "GET", url, MAX_LIST_REPLY_BYTES, headers=await self._signed("GET", url)
            )
            check_status(self.name, reply, error_code(reply.body))
            try:
                keys, token = parse_list_objects(reply.body)
            except S3ReplyError as error:
                raise ReplyBroken(f"listing keys: the reply breaks the contract: {error}") from error
            yield [key.removeprefix(self._config.key_prefix) for key in keys if key.startswith(full)]
            if token is None:
                return

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """A dry run's check: HeadObject per key, one after another (the storage's limits count a call
        per key checked). 200: it exists; 404: missing; 403: forbidden (S3 also answers 403 for a
        missing key to whoever may not list the bucket). Any other status is read as for a delete
        (transport.check_status: overload and outages raise); a failed call leaves its key unknown."""

        async def head(key: str) -> Reply:
            url = self._object_url(key)
            headers = await self._signed("HEAD", url)
            return await self._transport.fetch("HEAD", url, OBJECT_REPLY_SLACK, headers=headers)

        return await check_each(self.name, keys, head, lambda reply: error_code(reply.body))

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """GetObject with a Range (a manifest is read a part at a time, never whole), and with
        If-Match on the ETag first read: the object must not change between reads."""
        url = self._object_url(key)
        wanted = {"Range": f"bytes={offset}-{offset + size - 1}", **version_condition(version)}
        headers = await self._signed("GET", url, headers=wanted)
        reply = await self._object_call("GET", url, key, size + OBJECT_REPLY_SLACK, headers=headers)
        return object_part(key, reply, offset, size, version)

    async def write(self, key: str, data: bytes) -> None:
        url = self._object_url(key)
        headers = await self._signed("PUT", url, data, {"Content-Type": "text/plain; charset=utf-8"})
        await self._object_call("PUT", url, key, OBJECT_REPLY_SLACK, content=data, headers=headers)

    def _object_url(self, key: str) -> str:
        return f"{self._base}/{quote(self._config.key_prefix + key, safe='/-_.~')}"

    async def _object_call(self, method: str, url: str, key: str, limit: int, **request: Any) -> Reply:
        """A GetObject or PutObject: its reply when it is one, else a classified failure."""
        return await self._transport.fetch_object(
            method, url, key, limit, accepted=OBJECT_REPLY_STATUSES, detail=error_code, **request
        )

    async def aclose(self) -> None:
        await self._transport.aclose()
