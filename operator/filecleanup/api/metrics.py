"""Layer api. Prometheus metrics, served on their own port (``--metrics HOST:PORT``)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from filecleanup import __version__
from filecleanup.api.models import Phase

FINISHED = {phase.value for phase in Phase if phase.finished}
# A *_created series per counter and histogram doubles what Prometheus stores and nobody graphs it.
disable_created_metrics()  # type: ignore[no-untyped-call]
CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HOUR, DAY = 3600, 86_400
# From an album's deletion to its keys deleted: minutes when all is well, days behind a grace period or
# an outage, and a month is the GDPR's answer time.
ERASURE_SECONDS_BUCKETS = (60, 600, HOUR, 6 * HOUR, DAY, 3 * DAY, 7 * DAY, 14 * DAY, 25 * DAY, 30 * DAY)


class ObjectCounts(Collector):
    """FileCleanups of this installation by phase, and an estimate of the bytes they store in etcd:
    the objects at work as last seen on the watch stream, the finished ones from the sweeper's census
    (a finished object may not be watched at all)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._working: dict[str, tuple[str, int, float]] = {}  # uid -> (phase, bytes, erasure started)
        self.finished: dict[str, tuple[int, int]] = {}  # phase -> (objects, bytes), from the census
        self._clock = clock

    def seen(self, uid: str, phase: str | None, stored_bytes: int, erasure_started: float) -> None:
        """``erasure_started``: when the album was deleted (Unix time; decide/erasure.py)."""
        if phase in FINISHED:
            self._working.pop(uid, None)  # counted by the census from now on
        else:
            self._working[uid] = (phase or Phase.PENDING.value, stored_bytes, erasure_started)

    def gone(self, uid: str) -> None:
        self._working.pop(uid, None)

    def stored_bytes_of(self, uid: str) -> int | None:
        known = self._working.get(uid)
        return None if known is None else known[1]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        objects = GaugeMetricFamily("filecleanup_objects", "FileCleanup objects by phase", labels=["phase"])
        stored = GaugeMetricFamily(
            "filecleanup_stored_bytes",
            "An estimate of the bytes FileCleanups store in etcd, by phase (their specs)",
            labels=["phase"],
        )
        counts = {phase.value: [0, 0] for phase in Phase}
        for phase, size, _ in self._working.values():
            counts.setdefault(phase, [0, 0])
            counts[phase][0] += 1
            counts[phase][1] += size
        for phase, (count, size) in self.finished.items():
            counts.setdefault(phase, [0, 0])
            counts[phase][0] += count
            counts[phase][1] += size
        for phase, (count, size) in counts.items():
            objects.add_metric([phase], count)
            stored.add_metric([phase], size)
        oldest = GaugeMetricFamily(
            "filecleanup_oldest_unfinished_seconds",
            "Seconds since the album of the oldest FileCleanup not yet finished was deleted (0: none)",
        )
        # A held key is a lawful reason not to erase yet (a legal hold, a retention): not late.
        started = min(
            (since for phase, _, since in self._working.values() if phase != Phase.HELD.value), default=None
        )
        oldest.add_metric([], 0.0 if started is None else max(0.0, self._clock() - started))
        yield objects
        yield stored
        yield oldest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds, start time: what an SRE
        # looks at first, and what the benchmarks read.
        ProcessCollector(registry=self.registry)
        Info("filecleanup_build", "The operator's version and Python", registry=self.registry).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.keys_deleted = Counter(
            "filecleanup_keys_deleted",
            "Keys the storage confirmed as deleted",
            ["storage"],
            registry=self.registry,
        )
        self.keys_failed = Counter(
            "filecleanup_keys_failed",
            "Key deletions that failed (per attempt)",
            ["storage"],
            registry=self.registry,
        )
        self.call_seconds = Histogram(
            "filecleanup_delete_call_duration_seconds",
            "Duration of batch-delete calls; outcome is deleted, partial, failed, throttled or unavailable",
            ["storage", "outcome"],
            buckets=CALL_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "filecleanup_check_call_duration_seconds",
            "Duration of a dry run's existence checks (nothing deleted); outcome is checked, throttled "
            "or unavailable",
            ["storage", "outcome"],
            buckets=CALL_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.calls_in_flight = Gauge(
            "filecleanup_delete_calls_in_flight",
            "Batch-delete calls in flight",
            ["storage"],
            registry=self.registry,
        )
        self.storage_available = Gauge(
            "filecleanup_storage_available",
            "1 while the storage answers calls, 0 while it is unavailable",
            ["storage"],
            registry=self.registry,
        )
        self.concurrency_limit = Gauge(
            "filecleanup_storage_concurrency_limit",
            "Calls the storage may have in flight now: cut on throttling, grown back while calls succeed",
            ["storage"],
            registry=self.registry,
        )
        self.throttled_calls = Counter(
            "filecleanup_throttled_calls",
            "Calls the storage refused for overload (429, 503, SlowDown), each sent again after a wait",
            ["storage"],
            registry=self.registry,
        )
        self.paused = Gauge(
            "filecleanup_paused",
            "1 while the operator-wide pause (--pause-file) holds the storage, else 0",
            ["storage"],
            registry=self.registry,
        )
        self.recoverable_seconds = Gauge(
            "filecleanup_storage_recoverable_seconds",
            "How long the storage keeps data it confirmed as deleted recoverable (its erasure horizon: "
            "a soft delete's retention); absent for a storage whose horizon is not known",
            ["storage"],
            registry=self.registry,
        )
        self.erasure_seconds = Histogram(
            "filecleanup_erasure_seconds",
            "From an album's deletion (the album service's, else the FileCleanup's creation) to Succeeded",
            ["storage"],
            buckets=ERASURE_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.resurrected_keys = Counter(
            "filecleanup_resurrected_keys",
            "Keys a re-check after Succeeded found again (each was deleted again)",
            ["storage"],
            registry=self.registry,
        )
        self.retry_rounds = Counter(
            "filecleanup_retry_rounds",
            "Retry rounds scheduled for failed keys",
            ["storage"],
            registry=self.registry,
        )
        self.api_unreachable = Gauge(
            "filecleanup_api_unreachable",
            "1 while status writes fail because the Kubernetes API server is unreachable (the runs keep "
            "their progress in memory and write it once it is back), else 0",
            registry=self.registry,
        )
        self.status_write_retries = Counter(
            "filecleanup_status_write_retries",
            "Status writes sent again because the Kubernetes API server did not take them",
            registry=self.registry,
        )
        self.leader = Gauge(
            "filecleanup_leader",
            "1 while this replica holds the leader election Lease (or runs without election), else 0",
            registry=self.registry,
        )
        self.objects = ObjectCounts()
        self.registry.register(self.objects)

    def serve(self, address: str) -> None:
        """Serve /metrics at HOST:PORT, from a thread of its own (the event loop is never blocked)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)  # noqa: S104
