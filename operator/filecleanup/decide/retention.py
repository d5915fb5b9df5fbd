"""Layer decide. When a finished object goes, and what it holds, as labels on it: the sweeper finds and
counts the finished objects with a metadata-only list, without the operator keeping them in memory or in a
requeue.

Labels a finished object carries (the handler sets them in Kopf's own end-of-handling patch, so they
cost no extra write):

- ``filecleanup.dev/phase``: Succeeded or Failed, or Verifying for a Succeeded object with re-checks to
  come (it stays watched, and is not deleted, until the last one);
- ``filecleanup.dev/bytes``: an estimate of what the object stores in etcd (its spec);
- ``filecleanup.dev/controller``: a digest of the controller name that manages it (a label value
  cannot hold the name), so that each installation sweeps and counts only its own objects;
- ``filecleanup.dev/expires-at``: the Unix time at which it is deleted, if it is;
- ``filecleanup.dev/generation``: the ``metadata.generation`` it finished at;
- ``filecleanup.dev/uid``: the uid of the object they were written for.

Labels are an index, never the truth: anyone who may edit an object may set them, and a YAML copied
from a finished object carries them onto a new one. What happens to an object follows its status (which
only the operator writes) and its owner (``spec.managedBy``, immutable):

- Succeeded objects leave Kopf's watch (a label selector on ``phase``): ten thousand of them would
  cost the operator their memory and its startup their processing, for nothing. The sweeper looks at
  the objects so hidden from the metadata alone, and reads one whose labels may not be its own (their
  uid is not the object's: a copy) before it believes them. Labels that claim a phase the status does
  not have are set to what the status says, or removed, and the object is watched and handled again.
  A spec change on a Succeeded object (a new TTL) raises its generation past its status's; the sweeper
  removes its phase label in the same way, and the reconciler records the change and labels it anew.
- The sweeper deletes an object only after reading it: its status must be final, its owner this
  installation, and its expiry, computed from its status, past. An object whose labels lie otherwise
  is kept, and its labels are corrected if it is this installation's (another's is left as it is).

A Succeeded object expires ``ttlSecondsAfterFinished`` after it finished, or after the configuration's
``retention.succeededSeconds``; a Failed one after ``retention.failedSeconds``. A redriven object loses
its phase and expiry until it finishes again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from filecleanup.api.config import RetentionConfig
from filecleanup.api.models import DEFAULT_CONTROLLER, GROUP, FileCleanupSpec, FileCleanupStatus, Phase

PHASE_LABEL = f"{GROUP}/phase"
BYTES_LABEL = f"{GROUP}/bytes"
CONTROLLER_LABEL = f"{GROUP}/controller"
EXPIRES_LABEL = f"{GROUP}/expires-at"
GENERATION_LABEL = f"{GROUP}/generation"
UID_LABEL = f"{GROUP}/uid"
# The phase label of a Succeeded object with re-checks to come (status.verification).
VERIFYING = "Verifying"
# Kopf's watch: every object of this kind but those labelled Succeeded (see above: the sweeper makes
# sure that such a label is true).
WATCHED_SELECTOR = f"{PHASE_LABEL}!={Phase.SUCCEEDED.value}"
# What that selector hides.
HIDDEN_SELECTOR = f"{PHASE_LABEL}={Phase.SUCCEEDED.value}"
# Kopf's record of the configuration it last handled (its diff-base), an annotation on the object.
HANDLED_KEY = "last-handled-configuration"
HANDLED_ANNOTATION = f"{GROUP}/{HANDLED_KEY}"
MAX_DIGITS = 15

Labels = dict[str, str | None]  # None removes a label


def stored_bytes(spec: Mapping[str, Any]) -> int:
    """An estimate of what an object stores in etcd: its spec, as JSON (the keys, mostly)."""
    return len(json.dumps(dict(spec), separators=(",", ":")))


def controller_label(controller: str) -> str:
    return hashlib.sha256(controller.encode()).hexdigest()[:16]


def owner(spec: Mapping[str, Any]) -> str:
    """The installation that handles an object: its spec.managedBy, unset meaning the default one (as a
    Job's spec.managedBy does)."""
    return str(spec.get("managedBy") or DEFAULT_CONTROLLER)


def verifying(status: FileCleanupStatus) -> bool:
    """Whether a Succeeded object still has re-checks to come: it stays, and watched, until the last."""
    return status.verification is not None and status.verification.next_time is not None


def expiry(
    spec: FileCleanupSpec, status: FileCleanupStatus, retention: RetentionConfig
) -> datetime.datetime | None:
    """When a finished object is deleted; None: it is kept (re-checks to come included)."""
    if not status.phase.finished or status.completion_time is None or verifying(status):
        return None
    if status.phase in {Phase.SUCCEEDED, Phase.CHECKED}:
        seconds = spec.ttl_seconds_after_finished
        if seconds is None:
            seconds = retention.succeeded_seconds
    else:
        seconds = retention.failed_seconds
    return None if seconds is None else status.completion_time + datetime.timedelta(seconds=seconds)


def finished_labels(
    spec: FileCleanupSpec,
    status: FileCleanupStatus,
    *,
    controller: str,
    retention: RetentionConfig,
    stored_bytes: int,
) -> Labels:
    """The labels that follow a run: set on a finished object, removed from one that runs again."""
    if not status.phase.finished:
        return {PHASE_LABEL: None, EXPIRES_LABEL: None, GENERATION_LABEL: None}
    at = expiry(spec, status, retention)
    generation = status.observed_generation
    return {
        # A Succeeded object with re-checks to come stays in the watch until the last one.
        PHASE_LABEL: VERIFYING if verifying(status) else status.phase.value,
        BYTES_LABEL: str(stored_bytes),
        CONTROLLER_LABEL: controller_label(controller),
        EXPIRES_LABEL: None if at is None else str(int(at.timestamp())),
        GENERATION_LABEL: None if generation is None else str(generation),
    }


def sealed(labels: Labels, uid: str) -> Labels:
    """The labels that follow a run, with the uid of the object they are written for: a finished
    object's, or removed from an object at work. Labels that do not name the phase are left as they are."""
    if PHASE_LABEL not in labels:
        return labels
    return {**labels, UID_LABEL: uid if labels[PHASE_LABEL] is not None else None}


def changed_since_finished(metadata: Mapping[str, Any]) -> bool:
    """Whether a finished object's spec changed after it finished (its generation moved on)."""
    finished_at = number(metadata.get("labels") or {}, GENERATION_LABEL)
    return finished_at is not None and metadata.get("generation", finished_at) != finished_at


def changed(current: Mapping[str, str], wanted: Labels) -> Labels:
    """The labels to patch: only those that differ, so that an unchanged object costs no write."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def number(labels: Mapping[str, str], key: str) -> int | None:
    """A label that holds a number, or None (absent, or not a number: never trusted as one)."""
    value = labels.get(key, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS else None


def due(labels: Mapping[str, str], now: datetime.datetime) -> bool:
    """Whether an object with these labels has expired."""
    at = number(labels, EXPIRES_LABEL)
    return at is not None and at <= now.timestamp()


def suspect(metadata: Mapping[str, Any], now: datetime.datetime) -> bool:
    """Whether an object's labels must be checked against the object itself before the sweeper acts on
    them or counts them: they say it is due (a deletion is decided on the object, never on labels),
    they claim a phase but were not written for this object (a copy; or labels older than the uid
    label), or its spec changed after it finished."""
    labels = metadata.get("labels") or {}
    copied = PHASE_LABEL in labels and labels.get(UID_LABEL) != metadata.get("uid")
    return due(labels, now) or copied or changed_since_finished(metadata)


@dataclass(frozen=True)
class Verdict:
    """What an object's status and owner say should happen to it, whatever its labels claim."""

    ours: bool  # spec.managedBy names this installation: otherwise nothing else is decided
    phase: Phase | None = None  # its phase if finished (Succeeded or Failed), else None
    expired: bool = False  # finished, and its retention has passed: delete it
    relabel: Labels = field(default_factory=dict)  # labels that lie, set to what status says
    handed_back: bool = False  # a Succeeded object whose spec changed since: watched again
    forget_handled: bool = False  # Kopf's record of a configuration never handled here (a copy): drop it


def verdict(
    obj: Mapping[str, Any], *, controller: str, retention: RetentionConfig, now: datetime.datetime
) -> Verdict:
    """The sweeper's decision for one object it has read whole, from its status and owner alone."""
    metadata = obj.get("metadata") or {}
    raw_spec, raw_status = obj.get("spec") or {}, obj.get("status") or {}
    if owner(raw_spec) != controller:
        return Verdict(ours=False)
    try:
        spec = FileCleanupSpec.model_validate(raw_spec)
        status = FileCleanupStatus.model_validate(raw_status)
    except ValidationError:
        # The reconciler reports what it cannot read; nothing is deleted or relabelled on a guess.
        return Verdict(ours=True)
    labels: Mapping[str, str] = metadata.get("labels") or {}
    phase = status.phase if status.phase.finished else None
    generation = metadata.get("generation")
    if phase is not None and generation is not None and status.observed_generation not in {None, generation}:
        # Changed after it finished: the reconciler records the change (a redrive, a new TTL) first.
        # Out of the watch, no handler would see it: a label that hides the object goes.
        hidden = labels.get(PHASE_LABEL) == Phase.SUCCEEDED.value
        relabel: Labels = {PHASE_LABEL: None} if hidden else {}
        return Verdict(ours=True, phase=phase, relabel=relabel, handed_back=hidden)
    at = expiry(spec, status, retention)
    if phase is not None and at is not None and at <= now:
        return Verdict(ours=True, phase=phase, expired=True)
    truth = finished_labels(
        spec, status, controller=controller, retention=retention, stored_bytes=stored_bytes(raw_spec)
    )
    relabel = changed(labels, sealed(truth, str(metadata.get("uid", ""))))
    if set(relabel) == {UID_LABEL} and UID_LABEL not in labels:
        relabel = {}  # true labels written before the uid label: not worth a write of the whole object
    never_handled = not raw_status.get("phase") and PHASE_LABEL in labels
    forget = never_handled and HANDLED_ANNOTATION in (metadata.get("annotations") or {})
    return Verdict(ours=True, phase=phase, relabel=relabel, forget_handled=forget)
