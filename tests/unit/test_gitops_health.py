"""GitOps tools read a FileCleanup's health from the conditions the operator writes: kstatus (Flux,
kpt) by its rules, Argo CD by the Lua check in docs/gitops.md, run here with Lua 5.1 as Argo CD runs
it. The statuses come from the operator's own status code, not from hand-written samples."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from filecleanup.api.models import FileCleanupStatus, Phase, Reason
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.plan import Reject
from filecleanup.decide.progress import Progress
from filecleanup.decide.status import next_status, rejected_status, suspended_status
from tests.docblocks import marked_blocks
from tests.unit.decisions import NOW, answer_round, spec

HEALTH_KEY = "resource.customizations.health.filecleanup.dev_FileCleanup"


def argocd_health_script() -> str:
    blocks = marked_blocks("argocd-health")
    assert [(block.path.name, block.language) for block in blocks] == [("gitops.md", "yaml")], (
        "docs/gitops.md must hold the one tested Argo CD block"
    )
    script: str = yaml.safe_load(blocks[0].text)["data"][HEALTH_KEY]
    return script


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    health = lua.eval("function(source) return assert(loadstring(source))() end")(argocd_health_script())
    return str(health["status"]), str(health["message"])


def kstatus(obj: dict[str, Any]) -> str:
    """sigs.k8s.io/cli-utils/pkg/kstatus's rules for a custom resource, in their order."""
    status = obj.get("status") or {}
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"].get("generation"):
        return "InProgress"
    for condition in status.get("conditions", []):
        if condition["status"] == "True" and condition["type"] == "Reconciling":
            return "InProgress"
        if condition["status"] == "True" and condition["type"] == "Stalled":
            return "Failed"
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    if ready is not None and ready["status"] != "True":
        return "InProgress"
    return "Current"


def as_object(status: FileCleanupStatus, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "album-42", "generation": generation},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def after(outcome: Outcome, failing: set[str] | None = None) -> FileCleanupStatus:
    progress = Progress.start(spec(["a", "b"]))
    answer_round(progress, failing=failing or set())
    return next_status(
        FileCleanupStatus(), progress=progress, storage="photos", outcome=outcome, generation=1, now=NOW
    )


SUCCEEDED = after(Outcome(Phase.SUCCEEDED, Reason.SUCCEEDED, "deleted 2 of 2 keys"))
DELETING = next_status(
    FileCleanupStatus(),
    progress=Progress.start(spec(["a", "b"])),
    storage="photos",
    outcome=Outcome(Phase.IN_PROGRESS, Reason.DELETING, "deleting 2 keys"),
    generation=1,
    now=NOW,
)
BACKOFF = after(Outcome(Phase.BACKOFF, Reason.RETRY_SCHEDULED, "retry 1 of 5", delay=5), {"b"})
FAILED = after(Outcome(Phase.FAILED, Reason.RETRIES_EXHAUSTED, "1 of 2 keys not deleted"), {"b"})
FORBIDDEN = rejected_status(
    FileCleanupStatus(),
    spec=spec(["a"]),
    storage="photos",
    reject=Reject(Reason.FORBIDDEN, "outside the prefix"),
    generation=1,
    now=NOW,
)

SUSPENDED = suspended_status(
    DELETING,
    storage="photos",
    reason=Reason.SUSPENDED,
    message="suspended (spec.suspend); set it to false to resume",
    generation=1,
    now=NOW,
)
PAUSED = suspended_status(
    DELETING,
    storage="photos",
    reason=Reason.OPERATOR_PAUSED,
    message="the operator is paused for storage 'photos' (its pause file)",
    generation=1,
    now=NOW,
)
RESUMED = next_status(
    SUSPENDED,
    progress=Progress.start(spec(["a", "b"])),
    storage="photos",
    outcome=Outcome(Phase.IN_PROGRESS, Reason.DELETING, "deleting 2 keys"),
    generation=1,
    now=NOW,
)


@pytest.mark.parametrize(
    ("obj", "kstatus_result", "argocd"),
    [
        (
            {"metadata": {"name": "new", "generation": 1}},
            "Current",
            ("Progressing", "Waiting for the operator"),
        ),
        (as_object(DELETING), "InProgress", ("Progressing", "deleting 2 keys")),
        (as_object(BACKOFF), "InProgress", ("Progressing", "retry 1 of 5")),
        (as_object(SUCCEEDED), "Current", ("Healthy", "deleted 2 of 2 keys")),
        (as_object(FAILED), "Failed", ("Degraded", "1 of 2 keys not deleted")),
        (as_object(FORBIDDEN), "Failed", ("Degraded", "outside the prefix")),
        # Not done, on purpose: kstatus has no suspended state, Argo CD has.
        (
            as_object(SUSPENDED),
            "InProgress",
            ("Suspended", "suspended (spec.suspend); set it to false to resume"),
        ),
        (
            as_object(PAUSED),
            "InProgress",
            ("Suspended", "the operator is paused for storage 'photos' (its pause file)"),
        ),
        (as_object(RESUMED), "InProgress", ("Progressing", "deleting 2 keys")),
        # spec.suspend just set, not yet seen by the operator: still what it was.
        (as_object(DELETING, generation=2), "InProgress", ("Progressing", "Waiting for the operator")),
        # A spec change the operator has not seen yet: neither tool trusts the old verdict.
        (as_object(SUCCEEDED, generation=2), "InProgress", ("Progressing", "Waiting for the operator")),
    ],
)
def test_gitops_tools_read_the_health(
    obj: dict[str, Any], kstatus_result: str, argocd: tuple[str, str]
) -> None:
    assert kstatus(obj) == kstatus_result
    assert argocd_health(obj) == argocd


@pytest.mark.parametrize("status", [DELETING, BACKOFF, SUCCEEDED, FAILED, FORBIDDEN])
def test_exactly_one_kstatus_condition_is_true(status: FileCleanupStatus) -> None:
    true = {
        c.type
        for c in status.conditions
        if c.status == "True" and c.type in {"Ready", "Reconciling", "Stalled"}
    }
    assert len(true) == 1
    assert all(c.observed_generation == 1 for c in status.conditions)


@pytest.mark.parametrize("status", [SUSPENDED, PAUSED])
def test_a_suspended_object_is_neither_ready_nor_reconciling_nor_stalled(status: FileCleanupStatus) -> None:
    """None of the three is True while suspended: not at work, not done, not failed."""
    kstatus_conditions = {
        c.type: c.status for c in status.conditions if c.type in {"Ready", "Reconciling", "Stalled"}
    }
    assert kstatus_conditions == {"Ready": "False", "Reconciling": "False", "Stalled": "False"}
    suspended = status.condition("Suspended")  # type: ignore[arg-type]
    assert suspended is not None
    assert suspended.status == "True"
