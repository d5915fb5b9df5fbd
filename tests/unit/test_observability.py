"""What an SRE reads: the metrics' exposition and the log lines Kopf's framework would otherwise add."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from filecleanup import __version__
from filecleanup.api.metrics import Metrics
from filecleanup.controller.kopf_logs import KopfLogLevels


def test_metrics_have_process_and_build_info_and_no_created_series() -> None:
    metrics = Metrics()
    metrics.keys_deleted.labels("photos").inc()
    metrics.call_seconds.labels("photos", "deleted").observe(0.1)
    text = generate_latest(metrics.registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "filecleanup_build_info"} <= names
    assert f'version="{__version__}"' in text
    assert not [name for name in names if name.endswith("_created")]


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("level", "message", "expected"),
    [
        (logging.INFO, "Handler 'count_phases' succeeded.", None),
        (logging.INFO, "Handler 'delete-keys' succeeded.", None),
        (
            logging.ERROR,
            "Handler 'delete-keys' failed temporarily: next run in 12.5 s",
            (logging.INFO, "Requeued: next run in 12.5 s"),
        ),
        (
            logging.ERROR,
            "Handler 'delete-keys' failed temporarily: (503) Service Unavailable",
            (logging.WARNING, "Handler 'delete-keys' failed temporarily: (503) Service Unavailable"),
        ),
        (logging.ERROR, "Handler 'delete-keys' failed permanently: boom", (logging.ERROR, None)),
        (logging.INFO, "Completed: deleted 3 of 3 keys", (logging.INFO, None)),
    ],
)
def test_kopf_lines_at_the_right_level(
    level: int, message: str, expected: tuple[int, str | None] | None
) -> None:
    item = record(level, message)
    kept = KopfLogLevels().filter(item)
    if expected is None:
        assert not kept
        return
    assert kept
    assert (item.levelno, item.getMessage()) == (expected[0], expected[1] or message)
    assert item.levelname == logging.getLevelName(expected[0])
