"""Creating FileCleanups and waiting for them, for integration tests and benchmarks."""

from __future__ import annotations

import time
from typing import Any

from kubernetes.dynamic.exceptions import NotFoundError

from filecleanup.album.client import file_cleanup
from filecleanup.api.config import OperatorConfig
from filecleanup.api.models import API_VERSION, KIND
from filecleanup.run.rounds import checkpoint_interval
from tests.kube import Kube, Manifest
from tools.devkit.storages import Gate
from tools.envtest.polling import eventually

# The operator's statusIntervalSeconds, which the tests' configurations leave at its default: a round
# writes a checkpoint at most this often (an object's own keys: this per 1,000 keys).
STATUS_INTERVAL_SECONDS: float = OperatorConfig.model_fields["status_interval_seconds"].default


def create_cleanup(kube: Kube, namespace: str, name: str, keys: list[str], **spec: Any) -> Manifest:
    """``keys`` empty: the spec names a manifest (``manifest={"key": ...}``), or nothing, to see it
    refused."""
    manifest = spec.pop("manifest", None)
    body = file_cleanup(name, keys=keys, manifest=None if manifest is None else manifest["key"], **spec)
    if not keys and manifest is None:
        del body["spec"]["keys"]
    return kube.create(body, namespace=namespace)


def get_cleanup(kube: Kube, namespace: str, name: str) -> Manifest:
    return kube.get(API_VERSION, KIND, name, namespace=namespace)


def wait_for_phase(kube: Kube, namespace: str, name: str, phase: str, timeout: float = 60.0) -> Manifest:
    def reached() -> Manifest | None:
        try:
            found = get_cleanup(kube, namespace, name)
        except NotFoundError:  # not created yet
            return None
        return found if found.get("status", {}).get("phase") == phase else None

    found = eventually(f"{namespace}/{name} to reach phase {phase}", reached, timeout=timeout)
    announced = finished_event(found)
    if announced is not None:
        # Kopf posts events in the background, after the status write the phase came with: a test
        # that reads them next must not race that post.
        eventually(
            f"the {announced} event of {namespace}/{name}",
            lambda: any(reason == announced for _, reason, _ in kube.events(namespace, name)),
            timeout=timeout,
        )
    return found


def finished_event(cleanup: Manifest) -> str | None:
    """The reason of the event a finished object's last run posted: its Failed condition's reason,
    Completed (DryRun for a dry run); None while it is not finished."""
    status = cleanup.get("status", {})
    conditions = {item["type"]: item for item in status.get("conditions", [])}
    if status.get("phase") == "Failed" and "Failed" in conditions:
        return str(conditions["Failed"]["reason"])
    if status.get("phase") == "Checked":
        return "DryRun"
    if status.get("phase") == "Succeeded":
        return "Completed"
    return None


def album_keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/photo-{i:05d}.jpg" for i in range(count)]


def checkpoint_interval_of(total_keys: int | None) -> float:
    """Seconds between a round's checkpoints: an object of ``total_keys`` keys of its own, or a
    manifest's (None)."""
    if total_keys is None:
        return STATUS_INTERVAL_SECONDS
    return checkpoint_interval(STATUS_INTERVAL_SECONDS, total_keys)


def wait_checkpoint_due(total_keys: int | None) -> None:
    """With every call of the round waiting at a gate, let a checkpoint interval pass: the next call
    answered makes a checkpoint due, whose write's reply also tells the round of a spec change (a
    suspension). Only a lower bound: a slow machine makes it longer, never too short."""
    time.sleep(checkpoint_interval_of(total_keys))


def checkpoint_at_gate(
    kube: Kube, namespace: str, name: str, gate: Gate, *, beyond: int, total_keys: int | None
) -> Manifest:
    """A checkpoint of the object made while its calls wait at ``gate``, one that counts more than
    ``beyond`` keys deleted: a checkpoint interval passes, then the held calls go one at a time until
    the status shows one. The round then holds still at the gate (its next calls wait there)."""

    def checkpointed() -> Manifest | None:
        found = get_cleanup(kube, namespace, name)
        return found if found.get("status", {}).get("deleted", 0) > beyond else None

    wait_checkpoint_due(total_keys)
    return gate.step_until(f"a checkpoint of {namespace}/{name} past {beyond} keys", checkpointed)
