"""Layer api. The one check every key passes at the moment it is sent to a storage, whatever its source: an
object's own keys, a manifest's line, a failure report's line. The key rules (keys.py) and the storage's
policy for the object's namespace are applied again right before the call, so that nothing read back from
a place a tenant can write (a manifest, a report, status) can reach outside the namespace's prefix: a key
that fails is refused, never sent, and recorded as failed for good."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from filecleanup.api.config import StoragePolicy
from filecleanup.api.keys import key_problem

REFUSED = "refused before sending"


@dataclass(frozen=True)
class KeyGate:
    """The keys one object may send to one storage: valid keys under the prefix its namespace is
    allowed."""

    policy: StoragePolicy
    namespace: str
    # Keys under this prefix are the operator's own (its erasure receipts): no object deletes them.
    protected: str | None = None

    @cached_property
    def prefix(self) -> str:
        """The prefix every key must start with (worked out once: a gate checks a million keys)."""
        return self.policy.prefix_for(self.namespace)

    def problem(self, key: str) -> str | None:
        """Why ``key`` may not be sent for this object, or None."""
        if not self.policy.allows(self.namespace):
            return f"namespace {self.namespace!r} may not use this storage"
        problem = key_problem(key)
        if problem is not None:
            return problem
        if not key.startswith(self.prefix):
            return f"outside {self.prefix!r}"
        if self.protected is not None and key.startswith(self.protected):
            return f"under {self.protected!r}, where the operator keeps its erasure receipts"
        return None

    def admit(self, keys: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """The keys that may be sent, in order; and each refused key with why."""
        admitted: list[str] = []
        refused: dict[str, str] = {}
        for key in keys:
            problem = self.problem(key)
            if problem is None:
                admitted.append(key)
            else:
                refused[key] = f"{REFUSED}: {problem}"
        return admitted, refused
