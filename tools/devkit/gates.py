"""The gate of an object allowed every valid key: for tests of the calls, not of the policy."""

from filecleanup.api.config import StoragePolicy
from filecleanup.api.gate import KeyGate

OPEN_GATE = KeyGate(StoragePolicy(allowed_namespaces="*", key_prefix=""), "ns")
