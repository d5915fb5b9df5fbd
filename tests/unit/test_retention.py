"""When a finished object goes, as labels, and which labels a run must patch."""

from __future__ import annotations

import datetime

import pytest

from filecleanup.config import RetentionConfig
from filecleanup.models import FileCleanupSpec, FileCleanupStatus, Phase
from filecleanup.retention import (
    BYTES_LABEL,
    CONTROLLER_LABEL,
    EXPIRES_LABEL,
    GENERATION_LABEL,
    PHASE_LABEL,
    changed,
    changed_since_finished,
    controller_label,
    due,
    finished_labels,
    stored_bytes,
)

DONE = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)
DEFAULTS = RetentionConfig()  # ten minutes for Succeeded, a week for Failed


def labels(phase: Phase, retention: RetentionConfig = DEFAULTS, **fields: object) -> dict[str, str | None]:
    spec = FileCleanupSpec.model_validate({"keys": ["a"], **fields})
    status = FileCleanupStatus(phase=phase, completion_time=DONE, observed_generation=3)
    return finished_labels(spec, status, controller="example.com/a", retention=retention, stored_bytes=42)


def at(seconds: int) -> str:
    return str(int(DONE.timestamp()) + seconds)


def test_a_succeeded_object_expires_after_its_own_ttl_or_the_default() -> None:
    assert labels(Phase.SUCCEEDED, ttlSecondsAfterFinished=60) == {
        PHASE_LABEL: "Succeeded",
        BYTES_LABEL: "42",
        CONTROLLER_LABEL: controller_label("example.com/a"),
        EXPIRES_LABEL: at(60),
        GENERATION_LABEL: "3",
    }
    assert labels(Phase.SUCCEEDED)[EXPIRES_LABEL] == at(600)  # the configuration's default


def test_a_failed_object_is_kept_for_the_failed_retention_whatever_its_ttl() -> None:
    assert labels(Phase.FAILED, ttlSecondsAfterFinished=60)[EXPIRES_LABEL] == at(7 * 86_400)


def test_retention_off_keeps_finished_objects() -> None:
    keep = RetentionConfig(succeeded_seconds=None, failed_seconds=None)
    assert labels(Phase.SUCCEEDED, keep)[EXPIRES_LABEL] is None
    assert labels(Phase.FAILED, keep)[EXPIRES_LABEL] is None
    assert labels(Phase.SUCCEEDED, keep, ttlSecondsAfterFinished=5)[EXPIRES_LABEL] == at(5)  # its own wins


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.IN_PROGRESS, Phase.BACKOFF])
def test_an_object_at_work_loses_its_phase_and_expiry(phase: Phase) -> None:
    assert labels(phase) == {PHASE_LABEL: None, EXPIRES_LABEL: None, GENERATION_LABEL: None}  # not swept


@pytest.mark.parametrize(
    ("generation", "label", "changed_since"),
    [(3, "3", False), (4, "3", True), (4, None, False), (4, "x", False), (None, "3", False)],
)
def test_a_spec_change_after_finishing_is_seen_from_the_metadata_alone(
    generation: int | None, label: str | None, changed_since: bool
) -> None:
    metadata: dict[str, object] = {"labels": {} if label is None else {GENERATION_LABEL: label}}
    if generation is not None:
        metadata["generation"] = generation
    assert changed_since_finished(metadata) is changed_since


def test_only_labels_that_differ_are_patched() -> None:
    current = {EXPIRES_LABEL: "5", "team": "x"}
    assert changed(current, {EXPIRES_LABEL: "5", CONTROLLER_LABEL: "c"}) == {CONTROLLER_LABEL: "c"}
    assert changed({}, {EXPIRES_LABEL: None}) == {}
    assert changed({EXPIRES_LABEL: "5"}, {EXPIRES_LABEL: None}) == {EXPIRES_LABEL: None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (at(-1), True),
        (at(0), True),
        (at(1), False),
        ("soon", False),
        ("", False),
        ("9" * 40, False),
        ("\u00b2", False),
    ],
)
def test_due(value: str, expected: bool) -> None:
    assert due({EXPIRES_LABEL: value}, DONE) is expected


def test_controllers_get_distinct_label_values_and_sizes_are_measured() -> None:
    assert controller_label("filecleanup.dev/operator") != controller_label("example.com/team-b")
    assert len(controller_label("x")) == 16
    assert stored_bytes({"keys": ["a", "bb"]}) == len('{"keys":["a","bb"]}')
