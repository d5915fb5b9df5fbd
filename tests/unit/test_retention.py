"""When a finished object goes, as labels, and which labels a run must patch; and what the sweeper
decides from an object's status and owner whatever its labels claim."""

from __future__ import annotations

import copy
import datetime
from typing import Any, cast

import pytest
from kubernetes.aio import client

from filecleanup.api.config import RetentionConfig
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import DEFAULT_CONTROLLER, FileCleanupSpec, FileCleanupStatus, Phase
from filecleanup.controller.sweeper import Sweeper
from filecleanup.decide.retention import (
    BYTES_LABEL,
    CONTROLLER_LABEL,
    EXPIRES_LABEL,
    GENERATION_LABEL,
    HANDLED_ANNOTATION,
    PHASE_LABEL,
    UID_LABEL,
    Labels,
    Verdict,
    changed,
    changed_since_finished,
    controller_label,
    due,
    finished_labels,
    owner,
    sealed,
    stored_bytes,
    suspect,
    verdict,
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


def test_a_checked_dry_run_goes_as_a_succeeded_object_does() -> None:
    assert labels(Phase.CHECKED, ttlSecondsAfterFinished=60, dryRun=True)[EXPIRES_LABEL] == at(60)
    assert labels(Phase.CHECKED, dryRun=True)[EXPIRES_LABEL] == at(600)


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


def test_the_labels_of_a_run_name_the_object_they_are_written_for() -> None:
    assert sealed(labels(Phase.FAILED), "u-1")[UID_LABEL] == "u-1"
    assert sealed(labels(Phase.SUSPENDED), "u-1") == {
        PHASE_LABEL: None,
        EXPIRES_LABEL: None,
        GENERATION_LABEL: None,
        UID_LABEL: None,
    }
    assert sealed({}, "u-1") == {}  # a run that decided nothing about them (the object is gone)


def test_an_object_belongs_to_the_installation_its_spec_names() -> None:
    assert owner({"keys": ["a"]}) == DEFAULT_CONTROLLER
    assert owner({"keys": ["a"], "managedBy": None}) == DEFAULT_CONTROLLER
    assert owner({"keys": ["a"], "managedBy": "example.com/b"}) == "example.com/b"


UID = "0b5e2a43-2c4b-4b44-9e55-7f1c3c0d9a10"
NOW = DONE + datetime.timedelta(hours=1)


@pytest.mark.parametrize(
    ("labelled", "generation", "is_suspect"),
    [
        ({PHASE_LABEL: "Succeeded", UID_LABEL: UID, EXPIRES_LABEL: at(86_400)}, 1, False),  # its own
        ({PHASE_LABEL: "Succeeded", UID_LABEL: "another-uid"}, 1, True),  # a copy
        ({PHASE_LABEL: "Succeeded"}, 1, True),  # written by hand, or before the uid label
        ({PHASE_LABEL: "Failed", UID_LABEL: UID, EXPIRES_LABEL: at(0)}, 1, True),  # due: read first
        ({EXPIRES_LABEL: "1"}, 1, True),  # due, whatever else it says
        ({PHASE_LABEL: "Succeeded", UID_LABEL: UID, GENERATION_LABEL: "1"}, 2, True),  # changed since
        ({CONTROLLER_LABEL: "c", BYTES_LABEL: "42"}, 1, False),  # redriven: at work, nothing claimed
    ],
)
def test_labels_are_read_against_the_object_when_they_decide_or_may_be_copied(
    labelled: dict[str, str], generation: int, is_suspect: bool
) -> None:
    metadata = {"uid": UID, "generation": generation, "labels": labelled}
    assert suspect(metadata, NOW) is is_suspect


def cleanup(
    status: dict[str, object] | None,
    labelled: dict[str, str],
    *,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    **spec: object,
) -> dict[str, object]:
    metadata: dict[str, object] = {"uid": UID, "generation": generation, "labels": labelled}
    if annotations is not None:
        metadata["annotations"] = annotations
    obj: dict[str, object] = {"metadata": metadata, "spec": {"keys": ["a"], **spec}}
    if status is not None:
        obj["status"] = status
    return obj


def finished(phase: str, **fields: object) -> dict[str, object]:
    return {"phase": phase, "completionTime": DONE.isoformat(), "observedGeneration": 1, **fields}


def true_labels(status: dict[str, object], **fields: object) -> dict[str, str]:
    """The labels the handler gives an object of this status and spec."""
    spec = {"keys": ["a"], **fields}
    wanted = finished_labels(
        FileCleanupSpec.model_validate(spec),
        FileCleanupStatus.model_validate(status),
        controller=DEFAULT_CONTROLLER,
        retention=DEFAULTS,
        stored_bytes=stored_bytes(spec),
    )
    return {key: value for key, value in sealed(wanted, UID).items() if value is not None}


def decide(obj: dict[str, object], controller: str = DEFAULT_CONTROLLER) -> Verdict:
    return verdict(obj, controller=controller, retention=DEFAULTS, now=NOW)


EXPIRED = {PHASE_LABEL: "Failed", EXPIRES_LABEL: "1", CONTROLLER_LABEL: controller_label(DEFAULT_CONTROLLER)}


def test_a_suspended_object_labelled_failed_and_expired_is_kept_and_its_labels_corrected() -> None:
    found = decide(cleanup({"phase": "Suspended", "observedGeneration": 1}, EXPIRED))
    assert found == Verdict(ours=True, relabel={PHASE_LABEL: None, EXPIRES_LABEL: None})


@pytest.mark.parametrize("status", [None, {}, {"phase": "Pending"}, {"phase": "InProgress"}])
def test_an_object_at_work_is_never_expired_by_its_labels(status: dict[str, object] | None) -> None:
    found = decide(cleanup(status, EXPIRED))
    assert not found.expired and found.relabel == {PHASE_LABEL: None, EXPIRES_LABEL: None}


def test_another_installations_object_is_left_alone_whatever_its_labels_and_status() -> None:
    long_ago = (NOW - datetime.timedelta(days=8)).isoformat()
    obj = cleanup(finished("Failed", completionTime=long_ago), EXPIRED, managedBy="example.com/other")
    assert decide(obj) == Verdict(ours=False)  # no deletion, no label written
    assert decide(obj, controller="example.com/other").expired  # its own installation's decision


def test_a_finished_object_of_its_own_goes_when_its_status_says_so() -> None:
    failed = cleanup(finished("Failed", completionTime=(NOW - datetime.timedelta(days=8)).isoformat()), {})
    assert decide(failed) == Verdict(ours=True, phase=Phase.FAILED, expired=True)
    succeeded = cleanup(finished("Succeeded"), {}, ttlSecondsAfterFinished=60)  # an hour ago
    assert decide(succeeded) == Verdict(ours=True, phase=Phase.SUCCEEDED, expired=True)


def test_an_expiry_label_set_early_does_not_shorten_the_retention() -> None:
    found = decide(cleanup(finished("Failed"), {**true_labels(finished("Failed")), EXPIRES_LABEL: "1"}))
    assert found == Verdict(ours=True, phase=Phase.FAILED, relabel={EXPIRES_LABEL: at(7 * 86_400)})


def test_a_new_object_with_the_labels_of_a_finished_one_is_handed_to_the_watch() -> None:
    """A YAML copied from a finished object: its labels, and Kopf's record of what it handled."""
    copied = {
        PHASE_LABEL: "Succeeded",
        EXPIRES_LABEL: at(600),
        GENERATION_LABEL: "1",
        UID_LABEL: "another-uid",
        CONTROLLER_LABEL: controller_label(DEFAULT_CONTROLLER),
        BYTES_LABEL: "17",
    }
    gone: Labels = {PHASE_LABEL: None, EXPIRES_LABEL: None, GENERATION_LABEL: None, UID_LABEL: None}
    found = decide(cleanup(None, copied, annotations={HANDLED_ANNOTATION: "{}"}))
    assert found == Verdict(ours=True, relabel=gone, forget_handled=True)
    assert decide(cleanup(None, {PHASE_LABEL: "Succeeded"})) == Verdict(
        ours=True, relabel={PHASE_LABEL: None}
    )


def test_true_labels_are_left_as_they_are() -> None:
    status = finished("Succeeded")
    true = true_labels(status, ttlSecondsAfterFinished=86_400)
    assert decide(cleanup(status, true, ttlSecondsAfterFinished=86_400)) == Verdict(
        ours=True, phase=Phase.SUCCEEDED
    )
    # Written before the uid label existed: true all the same, and not worth a write of the object.
    older = {key: value for key, value in true.items() if key != UID_LABEL}
    assert decide(cleanup(status, older, ttlSecondsAfterFinished=86_400)).relabel == {}
    # Copied from another object that finished alike: the uid is set right.
    copied = {**true, UID_LABEL: "another-uid"}
    assert decide(cleanup(status, copied, ttlSecondsAfterFinished=86_400)).relabel == {UID_LABEL: UID}


def test_a_succeeded_object_changed_since_it_finished_is_handed_back_not_deleted() -> None:
    labelled = {PHASE_LABEL: "Succeeded", EXPIRES_LABEL: "1", UID_LABEL: UID, GENERATION_LABEL: "1"}
    found = decide(cleanup(finished("Succeeded"), labelled, generation=2))
    assert found == Verdict(ours=True, phase=Phase.SUCCEEDED, relabel={PHASE_LABEL: None}, handed_back=True)
    # A Failed one is watched: the handler sees the change (a redrive) and relabels it itself.
    failed = decide(cleanup(finished("Failed"), {**labelled, PHASE_LABEL: "Failed"}, generation=2))
    assert failed == Verdict(ours=True, phase=Phase.FAILED)


def test_a_status_that_cannot_be_read_decides_nothing() -> None:
    assert decide(cleanup({"phase": "Finished"}, EXPIRED)) == Verdict(ours=True)


class FakeObjects:
    """The CustomObjectsApi calls the sweeper makes, on objects in memory (one namespace), with the API
    server's label selectors (k=v, k!=v), merge patches and preconditions on uid and resourceVersion."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {obj["metadata"]["name"]: obj for obj in objects}
        self.version = 100
        for obj in objects:
            self._bump(obj)
        self.reads: list[str] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.deletes: list[tuple[str, client.V1Preconditions]] = []

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    @staticmethod
    def _selects(selector: str, labels: dict[str, str]) -> bool:
        for term in selector.split(","):
            if "!=" in term:
                key, value = term.split("!=")
                if labels.get(key) == value:
                    return False
            else:
                key, value = term.split("=")
                if labels.get(key) != value:
                    return False
        return True

    async def list_cluster_custom_object(self, *_: str, label_selector: str, **__: Any) -> dict[str, Any]:
        items = [
            {"metadata": copy.deepcopy(obj["metadata"])}
            for obj in self.objects.values()
            if self._selects(label_selector, obj["metadata"].get("labels") or {})
        ]
        return {"items": items, "metadata": {}}

    async def get_namespaced_custom_object(self, *args: str) -> dict[str, Any]:
        name = args[-1]
        self.reads.append(name)
        if name not in self.objects:
            raise client.ApiException(status=404)
        return copy.deepcopy(self.objects[name])

    async def patch_namespaced_custom_object(self, *args: Any, **_: Any) -> None:
        name, body = args[4], args[5]
        obj = self.objects[name]
        patch = body["metadata"]
        if patch.get("resourceVersion") not in {None, obj["metadata"]["resourceVersion"]}:
            raise client.ApiException(status=409)
        for field_name in ("labels", "annotations"):
            merged = {**(obj["metadata"].get(field_name) or {}), **patch.get(field_name, {})}
            obj["metadata"][field_name] = {key: value for key, value in merged.items() if value is not None}
        self.patches.append((name, patch))
        self._bump(obj)

    async def delete_namespaced_custom_object(
        self, *args: str, body: client.V1DeleteOptions, **_: Any
    ) -> None:
        name = args[4]
        obj, preconditions = self.objects[name], body.preconditions
        assert preconditions is not None
        if preconditions.resource_version != obj["metadata"]["resourceVersion"]:
            raise client.ApiException(status=409)
        self.deletes.append((name, preconditions))
        del self.objects[name]


class FakeEvents:
    def __init__(self) -> None:
        self.reasons: list[tuple[str, str]] = []

    async def create_namespaced_event(self, _: str, event: client.EventsV1Event) -> None:
        assert event.regarding is not None
        self.reasons.append((str(event.regarding.name), str(event.reason)))


def stored(
    name: str, status: dict[str, object] | None, labelled: dict[str, str], managed_by: str | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = cleanup(status, dict(labelled), managedBy=managed_by)
    obj["metadata"].update(name=name, namespace="ns", uid=f"uid-{name}")
    return obj


async def test_the_sweeper_deletes_after_reading_and_reads_another_installations_object_once() -> None:
    long_ago = finished("Failed", completionTime=(NOW - datetime.timedelta(days=8)).isoformat())
    objects = FakeObjects(
        stored("held", {"phase": "Suspended", "observedGeneration": 1}, EXPIRED),
        stored("elsewhere", long_ago, EXPIRED, "example.com/other"),
        stored("expired", long_ago, EXPIRED),
        stored("copy", None, {PHASE_LABEL: "Succeeded"}),  # hidden from the watch, not labelled ours
    )
    events = FakeEvents()
    sweeper = Sweeper(cast("Any", None), DEFAULT_CONTROLLER, [], Metrics(), DEFAULTS, identity="test")
    sweeper._objects = objects  # type: ignore[assignment]
    sweeper._events = events  # type: ignore[assignment]

    assert await sweeper.sweep(NOW) == 1
    [(name, preconditions)] = objects.deletes
    assert (name, preconditions.uid) == ("expired", "uid-expired")
    assert preconditions.resource_version is not None  # the version read, and no later one
    assert events.reasons == [("expired", "Expired")]
    assert objects.objects["held"]["metadata"]["labels"] == {CONTROLLER_LABEL: EXPIRED[CONTROLLER_LABEL]}
    assert objects.objects["copy"]["metadata"]["labels"] == {}  # watched again, and handled
    assert objects.objects["elsewhere"]["metadata"]["labels"] == EXPIRED  # left as it is
    assert all(patch["resourceVersion"] for _, patch in objects.patches)  # each on the version read
    assert sorted(objects.reads) == ["copy", "elsewhere", "expired", "held"]

    objects.reads.clear()
    assert await sweeper.sweep(NOW + datetime.timedelta(minutes=1)) == 0
    assert objects.reads == []  # nothing left to doubt: the other installation's object was remembered
    assert set(objects.objects) == {"held", "elsewhere", "copy"}


async def test_an_object_that_changes_after_it_is_read_is_not_deleted() -> None:
    long_ago = finished("Failed", completionTime=(NOW - datetime.timedelta(days=8)).isoformat())
    objects = FakeObjects(stored("redriven", long_ago, EXPIRED))
    sweeper = Sweeper(cast("Any", None), DEFAULT_CONTROLLER, [], Metrics(), DEFAULTS, identity="test")
    events = FakeEvents()
    sweeper._objects = objects  # type: ignore[assignment]
    sweeper._events = events  # type: ignore[assignment]
    read = objects.get_namespaced_custom_object

    async def read_then_redrive(*args: str) -> dict[str, Any]:
        found = await read(*args)
        objects._bump(objects.objects["redriven"])  # a person redrives it meanwhile
        return found

    objects.get_namespaced_custom_object = read_then_redrive  # type: ignore[method-assign]
    assert await sweeper.sweep(NOW) == 0
    assert set(objects.objects) == {"redriven"}
