"""The one poll-until loop of the tests, the tools and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    what: str, probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Call ``probe`` until it returns something truthy, and return that; after ``timeout`` seconds,
    raise TimeoutError naming ``what``. A probe raises to give up early (a process that exited)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
