"""Storage backends behind one small interface: delete a chunk of keys in one call."""

from __future__ import annotations

from filecleanup.config import OperatorConfig
from filecleanup.storage.base import ChunkResult, ConcurrencyLimited, Storage, StorageUnavailable
from filecleanup.storage.http import HttpStorage

__all__ = ["ChunkResult", "Storage", "StorageUnavailable", "open_storages"]


def open_storages(config: OperatorConfig) -> dict[str, Storage]:
    """One client per configured storage; the caller closes them with ``aclose``."""
    return {
        name: ConcurrencyLimited(HttpStorage(name, storage), storage.max_concurrent_requests)
        for name, storage in config.storages.items()
    }
