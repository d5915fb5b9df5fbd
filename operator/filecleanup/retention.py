"""When a finished object goes, and what it holds, as labels on it: the sweeper finds and counts the
finished objects with a metadata-only list, without the operator keeping them in memory or in a requeue.

Labels a finished object carries (the handler sets them in Kopf's own end-of-handling patch, so they
cost no extra write):

- ``filecleanup.dev/phase``: Succeeded or Failed;
- ``filecleanup.dev/bytes``: an estimate of what the object stores in etcd (its spec);
- ``filecleanup.dev/controller``: a digest of the controller name that manages it (a label value
  cannot hold the name), so that each installation sweeps and counts only its own objects;
- ``filecleanup.dev/expires-at``: the Unix time at which it is deleted, if it is;
- ``filecleanup.dev/generation``: the ``metadata.generation`` it finished at.

Succeeded objects leave Kopf's watch (a label selector on ``phase``): ten thousand of them would cost
the operator their memory and its startup their processing, for nothing. A spec change on one (a new
TTL) raises its generation past the label's; the sweeper then removes its phase label, the object
is watched again, and the reconciler records the change and labels it anew.

A Succeeded object expires ``ttlSecondsAfterFinished`` after it finished, or after the configuration's
``retention.succeededSeconds``; a Failed one after ``retention.failedSeconds``. A redriven object loses
its phase and expiry until it finishes again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from filecleanup.config import RetentionConfig
from filecleanup.models import GROUP, FileCleanupSpec, FileCleanupStatus, Phase

PHASE_LABEL = f"{GROUP}/phase"
BYTES_LABEL = f"{GROUP}/bytes"
CONTROLLER_LABEL = f"{GROUP}/controller"
EXPIRES_LABEL = f"{GROUP}/expires-at"
GENERATION_LABEL = f"{GROUP}/generation"
# Kopf's watch: every object of this kind but the Succeeded ones (see above).
WATCHED_SELECTOR = f"{PHASE_LABEL}!={Phase.SUCCEEDED.value}"
MAX_DIGITS = 15

Labels = dict[str, str | None]  # None removes a label


def stored_bytes(spec: Mapping[str, Any]) -> int:
    """An estimate of what an object stores in etcd: its spec, as JSON (the keys, mostly)."""
    return len(json.dumps(dict(spec), separators=(",", ":")))


def controller_label(controller: str) -> str:
    return hashlib.sha256(controller.encode()).hexdigest()[:16]


def expiry(
    spec: FileCleanupSpec, status: FileCleanupStatus, retention: RetentionConfig
) -> datetime.datetime | None:
    """When a finished object is deleted; None: it is kept."""
    if not status.phase.finished or status.completion_time is None:
        return None
    if status.phase == Phase.SUCCEEDED:
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
        PHASE_LABEL: status.phase.value,
        BYTES_LABEL: str(stored_bytes),
        CONTROLLER_LABEL: controller_label(controller),
        EXPIRES_LABEL: None if at is None else str(int(at.timestamp())),
        GENERATION_LABEL: None if generation is None else str(generation),
    }


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
