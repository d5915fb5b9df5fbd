"""When a finished object goes away, as labels on it: the sweeper finds the expired ones with a
metadata-only list, without the operator keeping finished objects in memory or in a requeue.

``filecleanup.dev/expires-at`` holds the Unix time at which the object is deleted, and
``filecleanup.dev/controller`` a digest of the controller name that manages it, so that each
installation sweeps only its own objects (a label value cannot hold the name itself).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping

from filecleanup.models import GROUP, FileCleanupSpec, FileCleanupStatus, Phase

EXPIRES_LABEL = f"{GROUP}/expires-at"
CONTROLLER_LABEL = f"{GROUP}/controller"

Labels = dict[str, str | None]  # None removes a label


def controller_label(controller: str) -> str:
    return hashlib.sha256(controller.encode()).hexdigest()[:16]


def expiry(spec: FileCleanupSpec, status: FileCleanupStatus) -> datetime.datetime | None:
    """When the object is deleted: ttlSecondsAfterFinished after it Succeeded. Failed objects stay,
    as the record of the keys that could not be deleted."""
    if status.phase != Phase.SUCCEEDED or status.completion_time is None:
        return None
    if spec.ttl_seconds_after_finished is None:
        return None
    return status.completion_time + datetime.timedelta(seconds=spec.ttl_seconds_after_finished)


def retention_labels(spec: FileCleanupSpec, status: FileCleanupStatus, controller: str) -> Labels:
    at = expiry(spec, status)
    if at is None:
        return {EXPIRES_LABEL: None}
    return {EXPIRES_LABEL: str(int(at.timestamp())), CONTROLLER_LABEL: controller_label(controller)}


def changed(current: Mapping[str, str], wanted: Labels) -> Labels:
    """The labels to patch: only those that differ, so that an unchanged object costs no write."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def due(labels: Mapping[str, str], now: datetime.datetime) -> bool:
    """Whether an object with these labels has expired (a label that is not a time never expires)."""
    value = labels.get(EXPIRES_LABEL, "")
    return value.isascii() and value.isdigit() and len(value) <= 12 and int(value) <= now.timestamp()  # noqa: PLR2004
