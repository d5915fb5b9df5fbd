"""Deletion by prefix: what a prefix may be, what the plan asks of the storage and the policy, and that a
listing keeps only keys the policy allows, whatever the storage lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from filecleanup.api.config import StoragePolicy
from filecleanup.api.gate import KeyGate
from filecleanup.api.keys import key_problem
from filecleanup.api.models import FileCleanupSpec, FileCleanupStatus, Reason
from filecleanup.decide import plan as planning
from filecleanup.decide.plan import Reject, RunManifest, StorageRules
from filecleanup.run.prefix import list_prefix
from tests.unit.decisions import NOW

TENANTS = StoragePolicy(allowed_namespaces="*", key_prefix="t/{namespace}/")


@pytest.mark.parametrize(
    "prefix", ["albums/42", "/albums/", "albums//42/", "albums/../x/", "./albums/", "a\n/"]
)
def test_a_prefix_is_a_key_prefix_ending_in_a_slash(prefix: str) -> None:
    with pytest.raises(ValidationError):
        FileCleanupSpec.model_validate({"prefix": prefix})


def test_exactly_one_of_keys_manifest_and_prefix() -> None:
    assert FileCleanupSpec.model_validate({"prefix": "albums/42/"}).prefix == "albums/42/"
    with pytest.raises(ValidationError, match="exactly one of keys, manifest and prefix"):
        FileCleanupSpec.model_validate({"prefix": "albums/42/", "keys": ["albums/42/a.jpg"]})
    with pytest.raises(ValidationError, match="exactly one of keys, manifest and prefix"):
        FileCleanupSpec.model_validate({"prefix": "albums/42/", "manifest": {"key": "albums/m.txt"}})


def plan_prefix(prefix: str, rules: StorageRules, namespace: str = "team-a") -> planning.Action:
    return planning.plan(
        FileCleanupSpec.model_validate({"prefix": prefix}),
        FileCleanupStatus(),
        namespace=namespace,
        storages={"s": rules},
        default_storage="s",
        now=NOW,
    )


def test_the_plan_needs_a_listing_storage_a_report_key_and_a_prefix_inside_the_policy() -> None:
    able = StorageRules(TENANTS, holds_manifests=True, lists_keys=True)
    assert isinstance(plan_prefix("t/team-a/albums/42/", able), RunManifest)
    assert isinstance(plan_prefix("t/team-a/", able), RunManifest)  # the whole namespace's share
    for prefix in ("t/", "t/team-b/albums/", "t/team-"):
        outside = plan_prefix(prefix + ("/" if not prefix.endswith("/") else ""), able)
        assert isinstance(outside, Reject)
        assert outside.reason == Reason.FORBIDDEN
    unable = plan_prefix("t/team-a/x/", StorageRules(TENANTS, holds_manifests=True))
    assert isinstance(unable, Reject)
    assert "cannot list keys under a prefix" in unable.message
    unsigned = plan_prefix(
        "t/team-a/x/", StorageRules(TENANTS, holds_manifests=True, lists_keys=True, signs_reports=False)
    )
    assert isinstance(unsigned, Reject)
    assert unsigned.reason == Reason.INVALID_MANIFEST


class Listing:
    """A storage that lists whatever it is given, as a hostile or broken one might."""

    name = "s"

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:  # noqa: ARG002  (lists anything)
        for start in range(0, len(self.keys), 7):
            await asyncio.sleep(0)
            yield self.keys[start : start + 7]


@given(
    st.lists(
        st.one_of(
            st.text(min_size=1, max_size=30),
            st.sampled_from(
                ["t/team-a/ok.jpg", "t/team-a/../team-b/x", "t/team-b/x.jpg", "t/team-a/a//b", "/etc/x"]
            ),
        ),
        max_size=40,
    )
)
def test_a_listing_keeps_only_keys_inside_the_policy_whatever_the_storage_lists(listed: list[str]) -> None:
    gate = KeyGate(TENANTS, "team-a")
    result = asyncio.run(list_prefix(Listing(listed), "t/team-a/", gate))  # type: ignore[arg-type]
    assert sorted(result.keys + result.skipped) == sorted(listed)
    for key in result.keys:
        assert key.startswith("t/team-a/")
        assert key_problem(key) is None
    assert all(gate.problem(key) is not None for key in result.skipped)
