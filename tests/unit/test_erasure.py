"""The erasure horizon: each storage's, declared or the backend's default, and the finished status that
says when the keys it deleted become unrecoverable."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from filecleanup.api.config import OperatorConfig
from filecleanup.api.metrics import Metrics, ObjectCounts
from filecleanup.api.models import ALBUM_DELETED_AT_ANNOTATION, FileCleanupStatus, Phase
from filecleanup.decide.erasure import MAX_LEAD, erasure_started
from filecleanup.decide.status import with_erasure
from filecleanup.run.reconciler import Reconciler
from tests.unit.decisions import NOW
from tests.unit.test_reconciler import CONFIG, Events, FakeSink, FakeStorage, context, limited

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


CREATED = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


@given(
    text=st.text(max_size=80) | st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat())
)
def test_an_album_deletion_annotation_is_believed_only_within_bounds(text: str) -> None:
    started = erasure_started({ALBUM_DELETED_AT_ANNOTATION: text}, CREATED)
    assert CREATED - MAX_LEAD <= started <= CREATED
    try:
        said = datetime.datetime.fromisoformat(text)
    except ValueError:
        said = None
    if said is not None and said.utcoffset() is not None and CREATED - MAX_LEAD <= said <= CREATED:
        assert started == said
    else:
        assert started == CREATED


def test_the_erasure_clock_starts_at_the_album_deletion_else_at_the_creation() -> None:
    deleted = "2026-11-30T08:00:00Z"
    assert erasure_started({ALBUM_DELETED_AT_ANNOTATION: deleted}, CREATED) == datetime.datetime(
        2026, 11, 30, 8, tzinfo=datetime.UTC
    )
    assert erasure_started({}, CREATED) == CREATED
    assert erasure_started({ALBUM_DELETED_AT_ANNOTATION: "2026-12-02T00:00:00Z"}, CREATED) == CREATED  # after
    assert (
        erasure_started({ALBUM_DELETED_AT_ANNOTATION: "2026-11-30T08:00:00"}, CREATED) == CREATED
    )  # no offset


def test_the_oldest_unfinished_object_is_aged_from_its_album_deletion() -> None:
    now = CREATED.timestamp()
    counts = ObjectCounts(clock=lambda: now)
    assert gauge(counts, "filecleanup_oldest_unfinished_seconds") == 0.0
    counts.seen("a", "Pending", 10, now - 3 * 86_400)  # a grace period counts: the album is gone
    counts.seen("b", "InProgress", 10, now - 60)
    assert gauge(counts, "filecleanup_oldest_unfinished_seconds") == 3 * 86_400
    counts.seen("a", "Succeeded", 10, now - 3 * 86_400)
    assert gauge(counts, "filecleanup_oldest_unfinished_seconds") == 60


def gauge(counts: ObjectCounts, name: str) -> float:
    (family,) = [family for family in counts.collect() if family.name == name]
    (sample,) = family.samples
    return float(sample.value)


async def test_a_success_observes_the_time_from_the_album_deletion() -> None:
    metrics, storage, sink = Metrics(), FakeStorage(), FakeSink()
    reconciler = Reconciler(CONFIG, {"photos": limited(storage)}, metrics, jitter=lambda: 0.0)
    found = context(sink, Events())
    deleted = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    await reconciler.run(dataclasses.replace(found, erasure_started=deleted))
    histogram = generate_latest(metrics.registry).decode()
    assert 'filecleanup_erasure_seconds_bucket{le="86400.0",storage="photos"} 0.0' in histogram
    assert 'filecleanup_erasure_seconds_bucket{le="259200.0",storage="photos"} 1.0' in histogram
