"""Prometheus metrics, served on their own port (``--metrics HOST:PORT``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from filecleanup.models import Phase

CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ObjectPhases(Collector):
    """FileCleanups by phase, as last seen on the watch stream."""

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}

    def seen(self, uid: str, phase: str | None) -> None:
        self._phases[uid] = phase or Phase.PENDING.value

    def gone(self, uid: str) -> None:
        self._phases.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("filecleanup_objects", "FileCleanup objects by phase", labels=["phase"])
        counts = dict.fromkeys((phase.value for phase in Phase), 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "Duration of batch-delete calls; outcome is deleted, partial, failed or unavailable",
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
        self.retry_rounds = Counter(
            "filecleanup_retry_rounds",
            "Retry rounds scheduled for failed keys",
            ["storage"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "filecleanup_leader",
            "1 while this replica holds the leader election Lease (or runs without election), else 0",
            registry=self.registry,
        )
        self.objects = ObjectPhases()
        self.registry.register(self.objects)

    def serve(self, address: str) -> None:
        """Serve /metrics at HOST:PORT, from a thread of its own (the event loop is never blocked)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)  # noqa: S104
