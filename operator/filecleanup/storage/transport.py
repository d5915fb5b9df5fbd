"""Layer storage. The one HTTP transport of the network backends (HTTP and S3). A storage is a peer we do not
control, so every call is bounded and every failure is classified:

- separate connect and read timeouts, and an overall deadline (connect + read), so that a storage
  that trickles its reply cannot hold one of its ``maxConcurrentRequests`` slots for ever;
- a reply read as a stream and cut off past a size proportional to the chunk, so that no reply can
  exhaust memory; no content encoding is asked for, and a reply that uses one anyway is refused
  (a compressed reply could expand without bound);
- no retries (the operator's rounds are the only ones);
- a failed call raises from the one tree of storage/errors.py, with a fixed, classified message:
  never an exception's text, which may carry the request's headers (a bearer token, a session token);
- a whole call's status is read by one rule for both backends (:func:`check_status`).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any

import httpx

from filecleanup.api.config import RemoteStorageBase
from filecleanup.storage.base import ExistsResult, ObjectPart
from filecleanup.storage.errors import (
    CallFailed,
    CallRefused,
    ObjectChanged,
    ObjectMissing,
    OutcomeUnknown,
    ReplyBroken,
    StorageThrottled,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)

# What a reply may hold beyond its keys: headers of the body, error codes and messages.
REPLY_BASE_BYTES = 64 * 1024
REPLY_BYTES_PER_KEY = 1024
# What a reply about a whole object (a manifest read, a report written) may hold beyond its data.
OBJECT_REPLY_SLACK = 64 * 1024


# Escaping can make a key longer: JSON writes a character as \uXXXX (6 bytes), XML '&' as '&amp;'.
ESCAPED_BYTES_PER_KEY_BYTE = 6


def reply_limit(keys: Sequence[str]) -> int:
    """The most bytes a reply about ``keys`` may have: each key once, escaped at worst, with its
    outcome and a message, plus a fixed allowance. A larger reply is not a reply about these keys."""
    return REPLY_BASE_BYTES + sum(
        ESCAPED_BYTES_PER_KEY_BYTE * len(key.encode()) + REPLY_BYTES_PER_KEY for key in keys
    )


# RFC 9110: delta-seconds is 1*DIGIT, and only ASCII digits ("²" is a digit to str.isdigit()).
DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


class StatusClass(Enum):
    """What an HTTP status says about a whole call (what follows is :func:`check_status`'s)."""

    OK = "ok"
    OVERLOADED = "overloaded"  # 429, 503: come back later, the keys are not at fault
    CREDENTIALS_REFUSED = "credentials refused"  # 401, 403: the operator's credentials, not the keys
    SERVER_ERROR = "server error"  # any other 5xx: the storage failed, not the keys
    REFUSED = "refused"  # any other status: this call about these keys failed


OVERLOADED_STATUSES = frozenset({HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE})
CREDENTIAL_STATUSES = frozenset({HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN})


def classify_status(status: int) -> StatusClass:
    if status == HTTPStatus.OK:
        return StatusClass.OK
    if status in OVERLOADED_STATUSES:
        return StatusClass.OVERLOADED
    if status in CREDENTIAL_STATUSES:
        return StatusClass.CREDENTIALS_REFUSED
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return StatusClass.SERVER_ERROR
    return StatusClass.REFUSED


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None for anything
    else, and for a header that asks for no wait (0, or a date that is not in the future), which
    taken at its word would have the call sent again at once: the caller then waits by its own rule."""
    if not value:
        return None
    value = value.strip()
    if DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": a time in UTC whose source zone is unknown
                when = when.replace(tzinfo=datetime.UTC)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return None
    return seconds if seconds > 0 else None


def check_status(storage: str, reply: Reply, detail: str = "") -> None:
    """The one reading of a whole call's status, for every call of both network backends (a delete,
    a listing, a dry run's check): nothing for a 200; otherwise raises. ``detail`` is what the body
    names of the failure, where the backend can read it safely (S3's error code).

    - 429, 503: :class:`StorageThrottled`, with the wait the storage asked for.
    - Any other 5xx, and 401/403: :class:`StorageUnavailable`, an outage.
    - Any other status: :class:`CallRefused`, this call's failure: its keys fail within their budget.
    """
    # Why any 5xx on the whole call is an outage, and never the keys' failure: the storage says it
    # failed, not that the keys are wrong, and a storage that is down answers exactly so (a 500 from a
    # store in trouble, a 502 or 504 from the proxy or load balancer in front of one that is gone).
    # Read as the chunk's failure, an outage would spend every key's retries and fail objects whose
    # keys were fine: an outage must cost no retry budget. Read as an outage, nothing is counted
    # deleted (the keys stay pending, and are sent again when the storage answers; deletes are
    # idempotent, so a call that did act is harmless to repeat), so nothing is reported deleted that
    # the storage did not confirm either. The price: a chunk that itself makes a storage fail every
    # time waits as an outage does (a Warning, filecleanup_storage_available 0) until it is fixed or
    # activeDeadlineSeconds passes, rather than failing its keys. 401 and 403 are read the same way:
    # the operator's credentials, not the keys, are refused.
    status = reply.status
    answer = f"{status} {detail}".rstrip()
    retry_after = parse_retry_after(reply.headers.get("Retry-After"))
    match classify_status(status):
        case StatusClass.OK:
            return
        case StatusClass.OVERLOADED:
            raise StorageThrottled(f"storage {storage} answered {answer}", retry_after=retry_after)
        case StatusClass.SERVER_ERROR:
            raise StorageUnavailable(f"storage {storage} answered {answer}", retry_after=retry_after)
        case StatusClass.CREDENTIALS_REFUSED:
            raise StorageUnavailable(
                f"storage {storage} rejected the credentials: it answered {answer}", retry_after=retry_after
            )
        case StatusClass.REFUSED:
            raise CallRefused(f"storage answered HTTP {answer}")


def existence(storage: str, reply: Reply, detail: str = "") -> bool | None:
    """A dry run's check of one object, from its reply: True (200), False (404), None for forbidden
    (403); any other status is read as every call's is (check_status raises)."""
    match reply.status:
        case HTTPStatus.OK:
            return True
        case HTTPStatus.NOT_FOUND:
            return False
        case HTTPStatus.FORBIDDEN:
            return None
    check_status(storage, reply, detail)
    raise CallRefused(f"{reply.status} from the storage")  # check_status raises for any other status


async def check_each(
    storage: str,
    keys: Sequence[str],
    fetch: Callable[[str], Awaitable[Reply]],
    detail: Callable[[Reply], str] = lambda _: "",
) -> ExistsResult:
    """A dry run's check of each key, one call after another (``fetch``: the key's object, or its
    metadata), read by :func:`existence` (``detail``: what the reply names of a failure). A call that
    failed leaves its key unknown; an outage or throttling raises as a delete does."""
    existing: list[str] = []
    missing: list[str] = []
    forbidden: list[str] = []
    for key in keys:
        try:
            reply = await fetch(key)
            found = existence(storage, reply, detail(reply))
        except CallFailed:
            continue
        (existing if found else missing if found is False else forbidden).append(key)
    return ExistsResult.from_reply(keys, existing, missing, forbidden)


def version_condition(version: str) -> dict[str, str]:
    """The header that makes a read of an object fail (412) unless it is still ``version``."""
    return {"If-Match": version} if version else {}


def object_part(key: str, reply: Reply, offset: int, size: int, version: str) -> ObjectPart:
    """The bytes of a ranged read's reply (a store that ignores Range sends the object whole) and the
    version they are from: a strong ETag, or nothing. Raises :class:`ObjectChanged` when the reply is
    not of ``version``, even from a store that ignored If-Match."""
    if reply.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
        return ObjectPart(b"", version)  # past the end
    etag = reply.headers.get("ETag", "")
    etag = "" if etag.startswith("W/") else etag  # a weak ETag names no exact bytes
    if version and etag != version:
        raise ObjectChanged(key)
    if reply.status == HTTPStatus.PARTIAL_CONTENT:
        return ObjectPart(reply.body, etag)
    return ObjectPart(reply.body[offset : offset + size], etag)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes


class BatchDeleteTransport:
    def __init__(
        self, name: str, config: RemoteStorageBase, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        """``transport`` replaces the network (tests give an ``httpx.MockTransport``)."""
        self._name = name
        self._read_timeout = config.read_timeout_seconds
        self.deadline = config.connect_timeout_seconds + config.read_timeout_seconds
        # The calls in flight are bounded here, not by the connection pool: httpcore (1.0.9) loses
        # for good the place of a request cancelled while it waited in a full pool for a new
        # connection (encode/httpcore#1093), until no call gets one. A pool without a bound gives
        # every request its connection at once, so no request ever waits in it.
        self._calls = asyncio.Semaphore(config.max_concurrent_requests)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=config.connect_timeout_seconds,
                read=config.read_timeout_seconds,
                write=config.read_timeout_seconds,
                pool=None,  # never waited for: see _calls
            ),
            limits=httpx.Limits(
                max_connections=None,
                max_keepalive_connections=config.max_concurrent_requests,
            ),
            headers={"Accept-Encoding": "identity"},
            transport=transport,
        )

    async def call(self, method: str, url: str, keys: Sequence[str], **request: Any) -> Reply:
        """The reply to a call about ``keys``, read up to the most a reply about them may hold (see
        :meth:`fetch` for what it raises)."""
        return await self.fetch(method, url, reply_limit(keys), **request)

    async def fetch(self, method: str, url: str, limit: int, **request: Any) -> Reply:
        """The reply, whatever its status, read up to ``limit`` bytes. Raises :class:`StorageUnavailable`
        when it could not connect, :class:`OutcomeUnknown` when no complete reply came, and
        :class:`ReplyBroken` for a reply that is compressed or too large (fixed, classified messages)."""
        try:
            async with self._calls, asyncio.timeout(self.deadline):
                return await self._exchange(method, url, limit, request)
        except TimeoutError as error:
            raise OutcomeUnknown(f"no complete reply within {self.deadline:g} s: outcome unknown") from error
        except httpx.ConnectTimeout as error:
            raise StorageUnavailable(f"cannot connect to storage {self._name}: connect timeout") from error
        except httpx.ConnectError as error:
            raise StorageUnavailable(f"cannot connect to storage {self._name}: connection failed") from error
        except httpx.ReadTimeout as error:
            raise OutcomeUnknown(f"no reply within {self._read_timeout:g} s: outcome unknown") from error
        except httpx.TransportError as error:
            # The class says what happened; the text may quote the request (its headers).
            raise OutcomeUnknown(f"the call failed ({type(error).__name__}): outcome unknown") from error

    async def fetch_object(
        self,
        method: str,
        url: str,
        key: str,
        limit: int,
        *,
        accepted: frozenset[int],
        detail: Callable[[bytes], str] = lambda _: "",
        **request: Any,
    ) -> Reply:
        """A whole object's read or write (a manifest, a report): its reply when the status is one of
        ``accepted``; :class:`ObjectMissing` for a 404, :class:`ObjectChanged` for a 412; any other
        status or failure makes the storage unavailable for now (``detail`` adds what the body says,
        an S3 error code say)."""
        try:
            reply = await self.fetch(method, url, limit, **request)
        except CallFailed as failed:
            raise StorageUnavailable(f"storage {self._name}: {method} {key!r}: {failed}") from failed
        if reply.status == HTTPStatus.NOT_FOUND:
            raise ObjectMissing(key)
        if reply.status == HTTPStatus.PRECONDITION_FAILED:
            raise ObjectChanged(key)
        if reply.status not in accepted:
            answer = f"{reply.status} {detail(reply.body)}".rstrip()
            raise StorageUnavailable(
                f"storage {self._name}: {method} {key!r} answered {answer}",
                retry_after=parse_retry_after(reply.headers.get("Retry-After")),
            )
        return reply

    async def _exchange(self, method: str, url: str, limit: int, request: dict[str, Any]) -> Reply:
        async with self._client.stream(method, url, **request) as response:
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in {"", "identity"}:
                raise ReplyBroken("the reply is compressed, which was not asked for")
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise ReplyBroken(f"the reply is larger than {limit} bytes")
            body = bytearray()
            async for piece in response.aiter_raw():
                body += piece
                if len(body) > limit:
                    raise ReplyBroken(f"the reply is larger than {limit} bytes")
            return Reply(response.status_code, response.headers, bytes(body))

    async def aclose(self) -> None:
        await self._client.aclose()
