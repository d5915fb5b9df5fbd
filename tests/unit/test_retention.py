"""When a finished object goes, as labels, and which labels a run must patch."""

from __future__ import annotations

import datetime

import pytest

from filecleanup.models import FileCleanupSpec, FileCleanupStatus, Phase
from filecleanup.retention import (
    CONTROLLER_LABEL,
    EXPIRES_LABEL,
    changed,
    controller_label,
    due,
    retention_labels,
)

DONE = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def status(phase: Phase) -> FileCleanupStatus:
    return FileCleanupStatus(phase=phase, completion_time=DONE)


def spec(**fields: object) -> FileCleanupSpec:
    return FileCleanupSpec.model_validate({"keys": ["a"], **fields})


def test_a_succeeded_object_with_a_ttl_expires_after_it() -> None:
    labels = retention_labels(spec(ttlSecondsAfterFinished=60), status(Phase.SUCCEEDED), "example.com/a")
    assert labels == {
        EXPIRES_LABEL: str(int(DONE.timestamp()) + 60),
        CONTROLLER_LABEL: controller_label("example.com/a"),
    }


@pytest.mark.parametrize(
    ("fields", "phase"),
    [
        ({}, Phase.SUCCEEDED),
        ({"ttlSecondsAfterFinished": 60}, Phase.FAILED),
        ({"ttlSecondsAfterFinished": 60}, Phase.BACKOFF),
    ],
)
def test_others_never_expire(fields: dict[str, object], phase: Phase) -> None:
    assert retention_labels(spec(**fields), status(phase), "c") == {EXPIRES_LABEL: None}


def test_only_labels_that_differ_are_patched() -> None:
    assert changed({EXPIRES_LABEL: "5", "team": "x"}, {EXPIRES_LABEL: "5", CONTROLLER_LABEL: "c"}) == {
        CONTROLLER_LABEL: "c"
    }
    assert changed({}, {EXPIRES_LABEL: None}) == {}
    assert changed({EXPIRES_LABEL: "5"}, {EXPIRES_LABEL: None}) == {EXPIRES_LABEL: None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1795694399", True),
        ("1795694400", True),
        ("1795694401", False),
        ("soon", False),
        ("", False),
        ("9" * 40, False),
    ],
)
def test_due(value: str, expected: bool) -> None:
    assert due({EXPIRES_LABEL: value}, DONE) is expected


def test_controllers_get_distinct_label_values() -> None:
    assert controller_label("filecleanup.dev/operator") != controller_label("example.com/team-b")
    assert len(controller_label("x")) == 16
