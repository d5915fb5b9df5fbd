"""Layer controller. Leader election through a ``coordination.k8s.io`` Lease, the way controller-runtime does
it: of the replicas of one installation, only the one holding the Lease works; the others wait, and take
over when the holder has not renewed it for its lease duration (measured on their own clock, so that clock
skew between nodes does not matter), or at once when the holder releases it on a graceful stop.

A holder that cannot renew within the renew deadline stops working at once: the operator exits and its
pod restarts as a candidate, as controller-runtime's managers do.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from dataclasses import dataclass
from enum import Enum

from kubernetes.aio import client

logger = logging.getLogger(__name__)
CONFLICT = 409
NOT_FOUND = 404


@dataclass(frozen=True)
class LeaseTiming:
    """controller-runtime's defaults: 15 s to take over from a dead holder, 10 s to renew, a try every 2 s."""

    duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.duration_seconds > self.renew_deadline_seconds > self.retry_period_seconds > 0:
            raise ValueError("lease duration > renew deadline > retry period > 0 is required")


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says about its holder; the part whose change shows that the holder is alive."""

    holder: str | None
    renew_time: datetime.datetime | None
    duration_seconds: int | None


class Decision(Enum):
    CREATE = "create"  # no Lease yet
    TAKE = "take"  # free, released or expired: take it over
    RENEW = "renew"  # ours: renew it
    WAIT = "wait"  # another candidate holds it and renews it


def decide(
    record: LeaseRecord | None, *, identity: str, unchanged_for: float, default_duration: float
) -> Decision:
    """What a candidate does with the Lease it just read. ``unchanged_for`` is how long (on this
    candidate's clock) the record has looked the same."""
    if record is None:
        return Decision.CREATE
    if record.holder == identity:
        return Decision.RENEW
    if not record.holder:
        return Decision.TAKE
    duration = record.duration_seconds or default_duration
    return Decision.TAKE if unchanged_for >= duration else Decision.WAIT


class LostLease(Exception):  # noqa: N818  (an event, not a bug)
    """The Lease could not be renewed in time, or another candidate took it."""


class LeaderElector:
    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, timing: LeaseTiming
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self._observed: LeaseRecord | None = None
        self._observed_at = time.monotonic()
        self.holding = False

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease."""
        waiting_for: str | None = None
        while not await self._try_acquire_or_renew():
            holder = self._observed.holder if self._observed else None
            if holder != waiting_for:
                logger.info("Standing by: Lease %s/%s is held by %s", self.namespace, self.name, holder)
                waiting_for = holder
            await asyncio.sleep(self._jittered(self.timing.retry_period_seconds))
        logger.info("Acquired Lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def hold(self) -> None:
        """Renew the Lease every retry period; raise :class:`LostLease` when that fails for longer than
        the renew deadline, or when another candidate took it."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.timing.retry_period_seconds)
            if await self._try_acquire_or_renew():
                last_renewed = time.monotonic()
            elif self._observed is not None and self._observed.holder not in {None, "", self.identity}:
                raise LostLease(f"Lease {self.namespace}/{self.name} was taken by {self._observed.holder}")
            elif time.monotonic() - last_renewed > self.timing.renew_deadline_seconds:
                raise LostLease(
                    f"Lease {self.namespace}/{self.name} not renewed within "
                    f"{self.timing.renew_deadline_seconds:g} s"
                )

    async def release(self) -> None:
        """Give the Lease up, so that a candidate takes over at once (a graceful stop)."""
        if not self.holding:
            return
        try:
            lease = await self._leases.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            now = _now()
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = now
            lease.spec.acquire_time = now
            await self._leases.replace_namespaced_lease(self.name, self.namespace, lease)
            logger.info("Released Lease %s/%s", self.namespace, self.name)
        except client.ApiException as error:
            logger.warning(
                "Could not release Lease %s/%s: %s %s", self.namespace, self.name, error.status, error.reason
            )
        finally:
            self.holding = False

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease: client.V1Lease | None = await self._leases.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as error:
            if error.status != NOT_FOUND:
                logger.warning(
                    "Cannot read Lease %s/%s: %s %s", self.namespace, self.name, error.status, error.reason
                )
                return False
            lease = None
        record = None if lease is None else _record(lease)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        decision = decide(
            record,
            identity=self.identity,
            unchanged_for=time.monotonic() - self._observed_at,
            default_duration=self.timing.duration_seconds,
        )
        if decision is Decision.WAIT:
            self.holding = False
            return False
        now = _now()
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=round(self.timing.duration_seconds),
            renew_time=now,
            acquire_time=now,
            lease_transitions=0,
        )
        try:
            if lease is None:
                body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name), spec=spec)
                await self._leases.create_namespaced_lease(self.namespace, body)
            else:
                previous = lease.spec or client.V1LeaseSpec()
                if decision is Decision.RENEW:
                    spec.acquire_time = previous.acquire_time or now
                    spec.lease_transitions = previous.lease_transitions or 0
                else:
                    spec.lease_transitions = (previous.lease_transitions or 0) + 1
                lease.spec = spec  # the resourceVersion read above makes this a compare-and-swap
                await self._leases.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as error:
            if error.status != CONFLICT:  # a conflict: another candidate was faster; not worth a warning
                logger.warning(
                    "Cannot write Lease %s/%s: %s %s", self.namespace, self.name, error.status, error.reason
                )
            self.holding = False
            return False
        self._observed, self._observed_at = _record(client.V1Lease(spec=spec)), time.monotonic()
        self.holding = True
        return True

    @staticmethod
    def _jittered(seconds: float) -> float:
        return seconds * (1 + 0.2 * random.random())  # noqa: S311  (spreading retries, not secrets)


def _record(lease: client.V1Lease) -> LeaseRecord:
    spec = lease.spec or client.V1LeaseSpec()
    return LeaseRecord(spec.holder_identity, spec.renew_time, spec.lease_duration_seconds)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
