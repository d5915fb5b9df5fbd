"""The erasure horizon: each storage's, declared or the backend's default, and the finished status that
says when the keys it deleted become unrecoverable."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from prometheus_client import generate_latest

from filecleanup.api.config import OperatorConfig
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import FileCleanupStatus, Phase
from filecleanup.decide.status import with_erasure
from filecleanup.run.reconciler import Reconciler
from tests.unit.decisions import NOW
from tests.unit.test_reconciler import Events, FakeSink, FakeStorage, context, limited

OPEN = {"allowedNamespaces": "*", "keyPrefix": ""}
WEEK = 7 * 86_400


def horizon(storage: dict[str, Any]) -> int | None:
    config = OperatorConfig.model_validate(
        {"defaultStorage": "s", "storages": {"s": {"policy": OPEN, **storage}}}
    )
    found = config.storages["s"].erasure_horizon()
    return None if found is None else found.recoverable_for_seconds


@pytest.mark.parametrize(
    ("storage", "seconds"),
    [
        ({"type": "s3", "bucket": "photos"}, 0),  # AWS: a key whose data versions remain is failed
        ({"type": "s3", "bucket": "photos", "endpoint": "https://storage.googleapis.com"}, WEEK),
        ({"type": "s3", "bucket": "photos", "endpoint": "https://minio.example"}, None),  # its own
        ({"type": "filesystem", "root": "/data"}, 0),
        ({"type": "http", "url": "https://files.example/delete"}, None),  # the contract says nothing
        (
            {
                "type": "s3",
                "bucket": "photos",
                "endpoint": "https://storage.googleapis.com",
                "erasure": {"recoverableForSeconds": 0},
            },
            0,
        ),
        (
            {
                "type": "http",
                "url": "https://f.example/d",
                "erasure": {"recoverableForSeconds": 3600, "note": "trash"},
            },
            3600,
        ),
    ],
)
def test_each_backend_has_its_default_and_a_declared_horizon_wins(
    storage: dict[str, Any], seconds: int | None
) -> None:
    assert horizon(storage) == seconds


def test_a_finished_status_that_deleted_keys_says_when_they_are_unrecoverable() -> None:
    done = FileCleanupStatus(phase=Phase.SUCCEEDED, total=3, deleted=3, completion_time=NOW)
    assert with_erasure(done, WEEK).unrecoverable_after == NOW + datetime.timedelta(days=7)
    assert with_erasure(done, 0).unrecoverable_after == NOW
    assert with_erasure(done, None).unrecoverable_after is None  # not known: not claimed
    nothing = FileCleanupStatus(phase=Phase.FAILED, total=3, failed=3, completion_time=NOW)
    assert with_erasure(nothing, WEEK).unrecoverable_after is None
    running = FileCleanupStatus(phase=Phase.IN_PROGRESS, total=3, deleted=1)
    assert (
        with_erasure(running.model_copy(update={"unrecoverable_after": NOW}), WEEK).unrecoverable_after
        is None
    )


async def test_a_run_writes_the_horizon_and_the_metric_shows_it() -> None:
    config = OperatorConfig.model_validate(
        {
            "defaultStorage": "photos",
            "storages": {
                "photos": {
                    "type": "filesystem",
                    "root": "/unused",
                    "policy": OPEN,
                    "erasure": {"recoverableForSeconds": WEEK},
                }
            },
        }
    )
    metrics, storage, sink = Metrics(), FakeStorage(), FakeSink()
    reconciler = Reconciler(config, {"photos": limited(storage)}, metrics, jitter=lambda: 0.0)
    await reconciler.run(context(sink, Events()))
    (done,) = sink.written
    assert done.completion_time is not None
    assert done.unrecoverable_after == done.completion_time + datetime.timedelta(days=7)
    assert b'filecleanup_storage_recoverable_seconds{storage="photos"} 604800.0' in generate_latest(
        metrics.registry
    )
