"""The gate every key passes as it is sent: property tests that no key outside the policy, and no key
that breaks the key rules, ever reaches a storage, whatever a manifest, a report or status holds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.config import StoragePolicy
from filecleanup.api.gate import REFUSED, KeyGate
from filecleanup.api.keys import key_problem
from filecleanup.api.metrics import Metrics
from filecleanup.storage.base import ConcurrencyLimited, ExistsResult
from filecleanup.storage.limits import Limiter
from tests.unit.test_reconciler import FakeStorage

POLICY = StoragePolicy(allowed_namespaces=["team-a", "team-b"], key_prefix="tenants/{namespace}/")
GATE = KeyGate(POLICY, "team-a")

# Keys a tenant could write anywhere: its own, its neighbour's (and near misses), and broken ones.
SEGMENT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=8)
KEYS = st.one_of(
    st.builds("tenants/team-a/{}".format, SEGMENT),
    st.builds("tenants/team-b/{}".format, SEGMENT),
    st.builds("tenants/team-a{}".format, SEGMENT),
    st.builds("{}tenants/team-a/{}".format, SEGMENT, SEGMENT),
    st.builds("tenants/team-a/../team-b/{}".format, SEGMENT),
    SEGMENT,
)


def allowed(key: str) -> bool:
    return key_problem(key) is None and key.startswith("tenants/team-a/")


@given(st.lists(KEYS, max_size=30))
def test_only_keys_the_policy_allows_are_ever_sent(keys: list[str]) -> None:
    backend = FakeStorage()
    storage = ConcurrencyLimited(backend, Limiter(2), Metrics())
    result = asyncio.run(storage.delete(keys, gate=GATE))
    assert all(allowed(key) for key in backend.sent)
    assert set(backend.sent) == {key for key in keys if allowed(key)}
    refused = {key for key in keys if not allowed(key)}
    assert result.refused == refused <= result.permanent
    assert all(result.failed[key].startswith(REFUSED) for key in refused)
    assert not result.deleted & refused


@dataclass
class Checking(FakeStorage):
    """A backend that says every key it is asked about exists."""

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        self.sent += keys
        return ExistsResult.from_reply(keys, existing=keys)


@given(st.lists(KEYS, max_size=30))
def test_a_dry_run_checks_only_keys_the_policy_allows(keys: list[str]) -> None:
    backend = Checking()
    storage = ConcurrencyLimited(backend, Limiter(2), Metrics())
    result = asyncio.run(storage.exists(keys, gate=GATE))
    assert all(allowed(key) for key in backend.sent)
    assert result.forbidden >= {key for key in keys if not allowed(key)}


def test_a_namespace_the_policy_does_not_allow_sends_nothing() -> None:
    backend = FakeStorage()
    storage = ConcurrencyLimited(backend, Limiter(2), Metrics())
    result = asyncio.run(storage.delete(["tenants/team-c/1.jpg"], gate=KeyGate(POLICY, "team-c")))
    assert backend.sent == []
    assert result.failed == {
        "tenants/team-c/1.jpg": f"{REFUSED}: namespace 'team-c' may not use this storage"
    }
