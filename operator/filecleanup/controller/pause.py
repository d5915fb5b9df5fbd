"""Layer controller. An operator-wide pause, switched at run time without a restart: a file
(``--pause-file``; the chart mounts a ConfigMap key, which the kubelet refreshes) read every few seconds,
holding ``all`` or the names of the storages to pause (separated by spaces, commas or lines). A paused
storage gets no new calls; the objects on it show it (reason OperatorPaused) when they next run or
checkpoint.

It fails closed: a file that is there but cannot be read (permissions, an I/O error, a directory, bytes
that are not UTF-8) pauses every storage until it can be read, since it may be saying "all". A missing
file pauses nothing: a ConfigMap without the key mounts no file."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from filecleanup.api.metrics import Metrics

ALL = "all"
DEFAULT_POLL_SECONDS = 5.0
logger = logging.getLogger(__name__)


def paused_storages(text: str, storages: Iterable[str]) -> frozenset[str]:
    """The configured storages that ``text`` pauses; names it does not know are ignored."""
    names = set(re.split(r"[\s,]+", text.strip())) - {""}
    configured = frozenset(storages)
    return configured if ALL in names else configured & names


class PauseSwitch(Collector):
    def __init__(self, path: Path | None, storages: Iterable[str], metrics: Metrics) -> None:
        self._path = path
        self._storages = frozenset(storages)
        self._metrics = metrics
        self.paused: frozenset[str] = frozenset()
        self.unreadable: str | None = None  # why the file cannot be read (the error's class), if so
        for storage in self._storages:
            metrics.paused.labels(storage).set(0)
        metrics.registry.register(self)

    def read(self) -> None:
        """Read the file again: a missing one pauses nothing, an unreadable one every storage."""
        if self._path is None:
            return
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
            self._readable()
        except (OSError, UnicodeDecodeError) as error:
            self._unreadable(error)
            text = ALL
        else:
            self._readable()
        paused = paused_storages(text, self._storages)
        if paused != self.paused:
            # A pause is worth a warning; its end is news, not trouble.
            level = logging.WARNING if paused else logging.INFO
            logger.log(level, "Paused storages: %s", ", ".join(sorted(paused)) or "none")
        self.paused = paused
        for storage in self._storages:
            self._metrics.paused.labels(storage).set(1 if storage in paused else 0)

    def _unreadable(self, error: OSError | UnicodeDecodeError) -> None:
        reason = type(error).__name__
        if reason != self.unreadable:
            logger.warning(
                "Pause file %s unreadable (%s: %s): every storage paused until it can be read",
                self._path,
                reason,
                error,
            )
        self.unreadable = reason

    def _readable(self) -> None:
        if self.unreadable is not None:
            logger.warning("Pause file %s readable again", self._path)
        self.unreadable = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        unreadable = GaugeMetricFamily(
            "filecleanup_pause_file_unreadable",
            "1 while the pause file (--pause-file) exists but cannot be read, which pauses every storage; "
            "error is why (PermissionError, IsADirectoryError, OSError, UnicodeDecodeError)",
            labels=["error"],
        )
        if self.unreadable is not None:
            unreadable.add_metric([self.unreadable], 1)
        yield unreadable

    async def run(self, interval: float = DEFAULT_POLL_SECONDS) -> None:
        while True:
            await asyncio.to_thread(self.read)
            await asyncio.sleep(interval)
