"""An operator-wide pause, switched at run time without a restart: a file (``--pause-file``; the chart
mounts a ConfigMap key, which the kubelet refreshes) read every few seconds, holding ``all`` or the
names of the storages to pause (separated by spaces, commas or lines). A paused storage gets no new
calls; the objects on it show it (reason OperatorPaused) when they next run or checkpoint."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from filecleanup.metrics import Metrics

ALL = "all"
DEFAULT_POLL_SECONDS = 5.0
logger = logging.getLogger(__name__)


def paused_storages(text: str, storages: Iterable[str]) -> frozenset[str]:
    """The configured storages that ``text`` pauses; names it does not know are ignored."""
    names = set(re.split(r"[\s,]+", text.strip())) - {""}
    configured = frozenset(storages)
    return configured if ALL in names else configured & names


class PauseSwitch:
    def __init__(self, path: Path | None, storages: Iterable[str], metrics: Metrics) -> None:
        self._path = path
        self._storages = frozenset(storages)
        self._metrics = metrics
        self.paused: frozenset[str] = frozenset()
        for storage in self._storages:
            metrics.paused.labels(storage).set(0)

    def read(self) -> None:
        """Read the file again; a missing or unreadable one pauses nothing (and says so once)."""
        if self._path is None:
            return
        try:
            text = self._path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            if self.paused:
                logger.warning(
                    "Pause file %s unreadable (%s): nothing paused", self._path, type(error).__name__
                )
            text = ""
        paused = paused_storages(text, self._storages)
        if paused != self.paused:
            logger.warning("Paused storages: %s", ", ".join(sorted(paused)) or "none")
        self.paused = paused
        for storage in self._storages:
            self._metrics.paused.labels(storage).set(1 if storage in paused else 0)

    async def run(self, interval: float = DEFAULT_POLL_SECONDS) -> None:
        while True:
            await asyncio.to_thread(self.read)
            await asyncio.sleep(interval)
