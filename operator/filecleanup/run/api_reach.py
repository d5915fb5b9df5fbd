"""Layer run. Whether the Kubernetes API server takes status writes, as every run of this process sees
it. A write it did not take for a reason that may pass (``kube.ApiUnreachable``) is a wait, not an
error: the run keeps its progress in memory and writes again after a capped back-off, with the
newest progress. One WARNING when writes start failing, one INFO when they land again, and the
``filecleanup_api_unreachable`` gauge in between."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from filecleanup.api.kube import ApiUnreachable
from filecleanup.api.metrics import Metrics

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


class ApiReachability:
    def __init__(
        self,
        metrics: Metrics,
        *,
        first_retry_seconds: float = FIRST_RETRY_SECONDS,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._metrics = metrics
        self._first = first_retry_seconds
        self._max = max_retry_seconds
        self._sleep = sleep
        self.unreachable = False

    async def wait_after(self, error: ApiUnreachable, attempt: int, jitter: float) -> None:
        """A write was not taken: say so if it is the first since writes last landed, then wait the
        ``attempt``-th back-off (doubling from the first, capped; ``jitter`` in [0, 1) spreads the
        writes of many objects)."""
        self._metrics.status_write_retries.inc()
        if not self.unreachable:
            self.unreachable = True
            self._metrics.api_unreachable.set(1)
            logger.warning(
                "The Kubernetes API server does not take status writes (%s); the runs keep their "
                "progress and write it once it is back",
                error,
            )
        delay = min(self._max, self._first * 2 ** min(attempt, 16))
        await self._sleep(delay * (0.5 + jitter / 2))

    def landed(self) -> None:
        """A write landed: the API server is back, if it was gone."""
        if self.unreachable:
            self.unreachable = False
            self._metrics.api_unreachable.set(0)
            logger.info("The Kubernetes API server takes status writes again")
