"""The storage interface and the outcome of one batch-delete call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from filecleanup.metrics import Metrics


NOT_CONFIRMED = "not confirmed as deleted by the storage"
logger = logging.getLogger(__name__)


class StorageUnavailable(Exception):  # noqa: N818  (the name is the public contract)
    """The whole call failed for reasons that are not the keys' fault: nothing is known deleted.

    Connection refused, connect timeout, DNS failure, 503 or 429. The caller backs off and keeps
    the keys pending, without using up their retry budget.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ObjectMissing(Exception):  # noqa: N818  (a plain fact: no such object)
    """A manifest or report object that the storage does not have."""


class ObjectStore(Protocol):
    """Whole storage objects, for manifests (the keys of a large deletion, kept in the storage itself)
    and their failure reports. Failures raise :class:`StorageUnavailable` with a classified message,
    and a missing object :class:`ObjectMissing`."""

    async def read(self, key: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``; empty past the end."""
        ...

    async def write(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class ChunkResult:
    """What one call confirmed. Every requested key is either in ``deleted`` or in ``failed``."""

    deleted: frozenset[str]
    failed: Mapping[str, str] = field(default_factory=dict)
    whole_call_failed: bool = False

    @classmethod
    def from_reply(
        cls, requested: Sequence[str], confirmed: Iterable[str], errors: Mapping[str, str]
    ) -> ChunkResult:
        """Only a requested key that the storage confirmed counts as deleted; the rest failed."""
        wanted = set(requested)
        deleted = frozenset(wanted.intersection(confirmed))
        failed = {key: errors.get(key) or NOT_CONFIRMED for key in wanted if key not in deleted}
        return cls(deleted=deleted, failed=failed)

    @classmethod
    def all_failed(cls, requested: Sequence[str], reason: str) -> ChunkResult:
        """The call failed as a whole, after the request may have reached the storage."""
        return cls(deleted=frozenset(), failed=dict.fromkeys(requested, reason), whole_call_failed=True)


class Storage(Protocol):
    name: str
    max_keys_per_call: int | None  # the most keys one call may carry, if the storage has a limit
    holds_manifests: bool  # it is an ObjectStore too: it can hold manifests and their reports

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        """Delete ``keys`` in one call. Raises :class:`StorageUnavailable` if the call failed as a whole
        before the storage could act on it."""
        ...

    async def aclose(self) -> None: ...


class ConcurrencyLimited:
    """Caps the calls in flight to one storage across all objects, so that one big album can neither
    starve the others nor flood the storage server; measures them; and turns any exception a backend
    lets escape (a bug, ours or a library's) into the chunk's failure, so that it is counted, shown
    and retried within the keys' budget like any other failed call, never retried for ever."""

    def __init__(self, storage: Storage, limit: int, metrics: Metrics) -> None:
        self.name = storage.name
        self.max_keys_per_call = storage.max_keys_per_call
        self.holds_manifests = storage.holds_manifests
        self._storage = storage
        self._slots = asyncio.Semaphore(limit)
        self._metrics = metrics

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        metrics, name = self._metrics, self.name
        async with self._slots:
            started = time.monotonic()
            metrics.calls_in_flight.labels(name).inc()
            try:
                result = await self._storage.delete(keys)
            except StorageUnavailable:
                metrics.storage_available.labels(name).set(0)
                metrics.call_seconds.labels(name, "unavailable").observe(time.monotonic() - started)
                raise
            except Exception as error:
                # The traceback goes to the log (secrets redacted there); status gets the kind only.
                logger.exception("Internal error in storage %s's backend", name)
                result = ChunkResult.all_failed(
                    keys,
                    f"internal error in the operator's {name} backend ({type(error).__name__}); see its log",
                )
            finally:
                metrics.calls_in_flight.labels(name).dec()
        outcome = "failed" if result.whole_call_failed else "partial" if result.failed else "deleted"
        metrics.call_seconds.labels(name, outcome).observe(time.monotonic() - started)
        metrics.storage_available.labels(name).set(1)
        metrics.keys_deleted.labels(name).inc(len(result.deleted))
        metrics.keys_failed.labels(name).inc(len(result.failed))
        return result

    async def read(self, key: str, offset: int, size: int) -> bytes:
        """A part of a manifest (outside the cap on calls: it is one read at a time per object)."""
        return await cast("ObjectStore", self._storage).read(key, offset, size)

    async def write(self, key: str, data: bytes) -> None:
        await cast("ObjectStore", self._storage).write(key, data)

    async def aclose(self) -> None:
        await self._storage.aclose()
