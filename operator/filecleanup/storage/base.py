"""Layer storage. The storage interface, the outcome of one batch-delete call, and what a storage can do
besides deleting: each capability is a runtime-checkable protocol, checked once when the storage is opened
(:class:`ConcurrencyLimited`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from filecleanup.storage.errors import (
    CallFailed,
    NotSent,
    ObjectChanged,
    ObjectMissing,
    ObjectRefused,
    StorageThrottled,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from filecleanup.api.gate import KeyGate
    from filecleanup.api.metrics import Metrics
    from filecleanup.storage.limits import Limiter

__all__ = [
    "NOT_CONFIRMED",
    "Backend",
    "ChecksExistence",
    "ChunkResult",
    "ConcurrencyLimited",
    "ExistsResult",
    "ListsVersions",
    "NotSent",
    "ObjectChanged",
    "ObjectMissing",
    "ObjectPart",
    "ObjectRefused",
    "ObjectStore",
    "Storage",
    "StorageThrottled",
    "StorageUnavailable",
    "always",
    "chunk_outcome",
]

_R = TypeVar("_R")
NOT_CONFIRMED = "not confirmed as deleted by the storage"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectPart:
    """Bytes of a whole object, and the version they are from: an ETag, or a file's identity (device,
    inode, size, modification time); empty where the storage names none."""

    data: bytes
    version: str = ""


@runtime_checkable
class ObjectStore(Protocol):
    """A capability: whole storage objects, for manifests (the keys of a large deletion, kept in the
    storage itself) and their failure reports. Failures raise :class:`StorageUnavailable` with a
    classified message, a missing object :class:`ObjectMissing`, one that can never be used as asked
    :class:`ObjectRefused`, and one that is not the ``version`` asked for :class:`ObjectChanged`."""

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """Up to ``size`` bytes from ``offset`` (empty past the end), of the object as it is now; with
        ``version``, only of that version (else :class:`ObjectChanged`)."""
        ...

    async def write(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class ChunkResult:
    """What one call confirmed. Every requested key is either in ``deleted`` or in ``failed``; the
    failed keys in ``permanent`` failed in a way no retry can fix (storage/errors.py)."""

    deleted: frozenset[str]
    failed: Mapping[str, str] = field(default_factory=dict)
    whole_call_failed: bool = False
    permanent: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()  # never sent: the gate refused them (in failed and permanent)

    @classmethod
    def from_reply(
        cls,
        requested: Sequence[str],
        confirmed: Iterable[str],
        errors: Mapping[str, str],
        permanent: Iterable[str] = (),
    ) -> ChunkResult:
        """Only a requested key that the storage confirmed counts as deleted; the rest failed."""
        wanted = set(requested)
        deleted = frozenset(wanted.intersection(confirmed))
        failed = {key: errors.get(key) or NOT_CONFIRMED for key in wanted if key not in deleted}
        return cls(deleted=deleted, failed=failed, permanent=frozenset(failed).intersection(permanent))

    @classmethod
    def all_failed(cls, requested: Sequence[str], reason: str) -> ChunkResult:
        """The call failed as a whole, after the request may have reached the storage."""
        return cls(deleted=frozenset(), failed=dict.fromkeys(requested, reason), whole_call_failed=True)

    @classmethod
    def all_refused(cls, refused: Mapping[str, str]) -> ChunkResult:
        """No call: every key was refused before sending (gate.py), and failed for good."""
        return cls(deleted=frozenset()).with_refused(refused)

    def with_refused(self, refused: Mapping[str, str]) -> ChunkResult:
        """This call's result, with the keys refused before it was sent added as failed for good."""
        if not refused:
            return self
        return ChunkResult(
            deleted=self.deleted,
            failed={**self.failed, **refused},
            whole_call_failed=self.whole_call_failed,
            permanent=self.permanent | frozenset(refused),
            refused=self.refused | frozenset(refused),
        )


async def chunk_outcome(keys: Sequence[str], call: Awaitable[ChunkResult]) -> ChunkResult:
    """What a call about ``keys`` confirmed. The one place where a call that failed while the storage
    is up (:class:`CallFailed`: no complete reply, a refused call, a reply that breaks the contract)
    becomes the chunk's failed keys, each with the failure's fixed message, to be retried within its
    budget. An outage (:class:`StorageUnavailable`) passes through: it is no key's failure."""
    try:
        return await call
    except CallFailed as failure:
        return ChunkResult.all_failed(keys, str(failure))


@dataclass(frozen=True)
class ExistsResult:
    """What one existence check (a dry run's call) found: every requested key is in at most one set;
    a key in none is unknown."""

    existing: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()

    @classmethod
    def from_reply(
        cls,
        requested: Sequence[str],
        existing: Iterable[str] = (),
        missing: Iterable[str] = (),
        forbidden: Iterable[str] = (),
    ) -> ExistsResult:
        """Only requested keys count, and a key the reply puts in two sets is unknown."""
        wanted = set(requested)
        sets = [wanted.intersection(existing), wanted.intersection(missing), wanted.intersection(forbidden)]
        contradicted = (sets[0] & sets[1]) | (sets[0] & sets[2]) | (sets[1] & sets[2])
        found, gone, refused = (frozenset(found - contradicted) for found in sets)
        return cls(existing=found, missing=gone, forbidden=refused)

    @classmethod
    def unknown(cls) -> ExistsResult:
        """Nothing known about any key."""
        return cls()


@runtime_checkable
class ChecksExistence(Protocol):
    """A capability: telling which keys exist without deleting them (for dry runs)."""

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """Which of ``keys`` the storage has, without deleting anything. Raises
        :class:`StorageUnavailable` (or :class:`StorageThrottled`) as ``delete`` does."""
        ...


@runtime_checkable
class ListsKeys(Protocol):
    """A capability: listing the keys under a prefix, for a deletion by prefix."""

    def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """The keys under ``prefix``, a page at a time, in order. Raises as ``delete`` does."""
        ...


@runtime_checkable
class ListsVersions(Protocol):
    """A capability: listing every version a key has (data versions and delete markers), so that a
    versioned store can delete them all (S3's ``deleteAllVersions``)."""

    async def versions(self, keys: Sequence[str]) -> Mapping[str, Sequence[str]]:
        """Every version ID of each of ``keys``. Raises as ``delete`` does."""
        ...


class Backend(Protocol):
    """One storage's client, as configured: each call goes out as soon as it is made. What it can do
    besides deleting is what it implements of :class:`ObjectStore`, :class:`ChecksExistence` and
    :class:`ListsVersions`."""

    name: str
    max_keys_per_call: int | None  # the most keys one call may carry, if the storage has a limit

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        """Delete ``keys`` in one call: what the storage confirmed, every other key failed (a failed
        call fails them all, :func:`chunk_outcome`). Raises :class:`StorageUnavailable` for an outage
        (storage/errors.py): nothing is known deleted, and no key is at fault."""
        ...

    async def aclose(self) -> None: ...


def always() -> bool:
    return True


class Storage(Protocol):
    """A backend held to its limits (:class:`ConcurrencyLimited`): a call may wait for its turn, and
    every key passes the object's gate before it is sent."""

    name: str
    max_keys_per_call: int | None
    holds_manifests: bool  # its backend is an ObjectStore: manifests can be run from it
    lists_keys: bool  # its backend lists keys under a prefix: deletions by prefix can be run on it

    async def delete(
        self, keys: Sequence[str], *, gate: KeyGate, may_start: Callable[[], bool] = always
    ) -> ChunkResult:
        """Delete the keys ``gate`` admits in one call once it is this call's turn (the others fail for
        good, unsent); if ``may_start()`` is false by then, raise :class:`NotSent` instead, with
        nothing sent (the object was suspended or paused, or too many of its keys failed, while the
        call waited)."""
        ...

    async def exists(self, keys: Sequence[str], *, gate: KeyGate) -> ExistsResult:
        """A dry run's check of the keys ``gate`` admits, under the same limits (the others are
        forbidden, unsent): every key unknown where the backend cannot tell."""
        ...

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """As :meth:`ObjectStore.read`, from a backend that holds objects (``holds_manifests``); any
        other refuses ``key`` for good (:class:`ObjectRefused`)."""
        ...

    async def write(self, key: str, data: bytes) -> None:
        """As :meth:`ObjectStore.write`, or :class:`ObjectRefused` as :meth:`read`."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """As :meth:`ListsKeys.list_keys`, from a backend that lists (``lists_keys``); any other
        refuses it for good (:class:`ObjectRefused`)."""
        ...

    async def aclose(self) -> None: ...


class ConcurrencyLimited:
    """Holds one storage to its limits across all objects (storage/limits.py: token buckets and an
    adaptive in-flight limit), so that one big album can neither starve the others nor flood the
    storage server; sends a throttled call again after the limiter's wait, without it counting against
    the keys; measures the calls; and turns any exception a backend lets escape (a bug, ours or a
    library's) into the chunk's failure, so that it is counted, shown and retried within the keys'
    budget like any other failed call, never retried for ever.

    What the backend can do besides deleting is checked here, once, against the capability protocols:
    a manifest needs an :class:`ObjectStore`, a dry run's check a :class:`ChecksExistence` (without it
    every key is unknown, and no call is made)."""

    def __init__(self, storage: Backend, limiter: Limiter, metrics: Metrics) -> None:
        self.name = storage.name
        self.max_keys_per_call = storage.max_keys_per_call
        self._objects = storage if isinstance(storage, ObjectStore) else None
        self._checker = storage if isinstance(storage, ChecksExistence) else None
        self.holds_manifests = self._objects is not None
        self._lister = storage if isinstance(storage, ListsKeys) else None
        self.lists_keys = self._lister is not None
        can = {
            "hold manifests": self.holds_manifests,
            "list keys": self.lists_keys,
            "check existence": self._checker is not None,
            "list versions": isinstance(storage, ListsVersions),
        }
        logger.debug("Storage %s can delete%s", self.name, "".join(f", {what}" for what in can if can[what]))
        self._storage = storage
        self._limiter = limiter
        self._metrics = metrics
        metrics.concurrency_limit.labels(self.name).set(limiter.limit)

    async def delete(
        self, keys: Sequence[str], *, gate: KeyGate, may_start: Callable[[], bool] = always
    ) -> ChunkResult:
        """Every chunk of every run reaches the storage through here, and each of its keys passes
        ``gate`` first: a refused key is never sent, and fails for good."""
        admitted, refused = gate.admit(keys)
        if not admitted:
            return ChunkResult.all_refused(refused)

        def failed(error: Exception) -> ChunkResult:
            return ChunkResult.all_failed(
                admitted,
                f"internal error in the operator's {self.name} backend ({type(error).__name__}); see its log",
            )

        sent, started = await self._limited(
            admitted, self._storage.delete, failed, may_start, seconds=self._metrics.call_seconds
        )
        result = sent.with_refused(refused)
        outcome = "failed" if result.whole_call_failed else "partial" if result.failed else "deleted"
        self._metrics.call_seconds.labels(self.name, outcome).observe(time.monotonic() - started)
        self._metrics.keys_deleted.labels(self.name).inc(len(result.deleted))
        self._metrics.keys_failed.labels(self.name).inc(len(result.failed))
        return result

    async def exists(self, keys: Sequence[str], *, gate: KeyGate) -> ExistsResult:
        """A dry run's check, under the same limits as a delete; every key unknown when the backend
        cannot check (an HTTP storage without dryRunUrl). A key ``gate`` refuses is forbidden, and
        never sent."""
        admitted, refused = gate.admit(keys)
        checked = await self._exists(admitted) if admitted else ExistsResult.unknown()
        return ExistsResult.from_reply(
            keys, checked.existing, checked.missing, [*checked.forbidden, *refused]
        )

    async def _exists(self, keys: Sequence[str]) -> ExistsResult:
        checker = self._checker
        if checker is None:
            return ExistsResult.unknown()
        # A check may be a request per key (S3's HeadObject): it takes a call token per key.
        result, started = await self._limited(
            keys,
            checker.exists,
            lambda _: ExistsResult.unknown(),
            always,
            calls=len(keys),
            seconds=self._metrics.check_seconds,
        )
        self._metrics.check_seconds.labels(self.name, "checked").observe(time.monotonic() - started)
        return result

    async def _limited(
        self,
        keys: Sequence[str],
        call: Callable[[Sequence[str]], Awaitable[_R]],
        internal_error: Callable[[Exception], _R],
        may_start: Callable[[], bool],
        *,
        seconds: Histogram,
        calls: int = 1,
    ) -> tuple[_R, float]:
        """The call's result under the storage's limits, sent again while throttled; and when the last
        try started. Each try takes the rate limits' tokens: ``calls`` calls and a key per key. Tries
        that were throttled or met an outage are timed in ``seconds`` (a delete's, or a check's)."""
        metrics, name = self._metrics, self.name
        await self._limiter.acquire(len(keys), calls)
        holding = True  # a slot under the in-flight limit
        try:
            # The wait for a turn can be long (other objects, throttling): whoever asked may have
            # changed its mind, and a suspended or paused object must not send what it queued.
            if not may_start():
                raise NotSent
            while True:
                started = time.monotonic()
                metrics.calls_in_flight.labels(name).inc()
                wait: float | None = None
                try:
                    result = await call(keys)
                except StorageThrottled as throttled:
                    seconds.labels(name, "throttled").observe(time.monotonic() - started)
                    wait = self._throttled(throttled)
                except StorageUnavailable:
                    metrics.storage_available.labels(name).set(0)
                    seconds.labels(name, "unavailable").observe(time.monotonic() - started)
                    raise
                except Exception as error:
                    # The traceback goes to the log (secrets redacted there); status gets the kind only.
                    logger.exception("Internal error in storage %s's backend", name)
                    result = internal_error(error)
                finally:
                    metrics.calls_in_flight.labels(name).dec()
                if wait is None:
                    break
                # The refused call gives its slot up while it waits, and comes back when the pace of
                # the storage's admitted rate lets it (limits.py): a call of its own again, as many
                # requests again, so it waits for their tokens and a slot too. Slots held by waiting
                # calls would starve the calls the storage would take meanwhile.
                self._limiter.release()
                holding = False
                await asyncio.sleep(max(wait, self._limiter.reserve(len(keys), calls)))
                if not may_start():
                    raise NotSent  # the storage refused it: nothing was done
                await self._limiter.take_slot()
                holding = True
                await self._limiter.pace(calls)
            self._limiter.succeeded()
        finally:
            if holding:
                self._limiter.release()
        metrics.concurrency_limit.labels(name).set(self._limiter.limit)
        metrics.storage_available.labels(name).set(1)
        return result, started

    def _throttled(self, throttled: StorageThrottled) -> float:
        """The wait before the refused call goes again; raises :class:`StorageUnavailable` once the
        throttling has lasted past the limiter's bound."""
        metrics, name = self._metrics, self.name
        metrics.throttled_calls.labels(name).inc()
        wait = self._limiter.throttled(throttled.retry_after)
        metrics.concurrency_limit.labels(name).set(self._limiter.limit)
        if wait is None:
            metrics.storage_available.labels(name).set(0)
            raise StorageUnavailable(
                f"{throttled}, and throttling lasted at the lowest concurrency",
                retry_after=throttled.retry_after,
            ) from throttled
        return wait

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        """A part of a manifest (outside the cap on calls: it is one read at a time per object)."""
        return await self._object_store(key).read(key, offset, size, version=version)

    async def write(self, key: str, data: bytes) -> None:
        await self._object_store(key).write(key, data)

    def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """The keys under ``prefix`` (outside the cap on calls: one listing at a time per object);
        a storage that cannot list refuses it for good."""
        if self._lister is None:
            raise ObjectRefused(f"storage {self.name} cannot list keys: {prefix!r}")
        return self._lister.list_keys(prefix)

    def _object_store(self, key: str) -> ObjectStore:
        """The backend as an object store; a storage that holds no objects refuses ``key`` for good
        (the plan never runs a manifest from one)."""
        if self._objects is None:
            raise ObjectRefused(f"storage {self.name} holds no manifests or reports: {key!r}")
        return self._objects

    async def aclose(self) -> None:
        await self._storage.aclose()
