"""Layer storage. The configured storages opened: each backend for its configuration, held to its limits."""

from __future__ import annotations

from filecleanup.api.config import (
    AzureBlobStorageConfig,
    FilesystemStorageConfig,
    GcsStorageConfig,
    HttpStorageConfig,
    OperatorConfig,
    S3StorageConfig,
    StorageConfig,
)
from filecleanup.api.metrics import Metrics
from filecleanup.storage.azureblob import AzureBlobStorage
from filecleanup.storage.base import Backend, ConcurrencyLimited, Storage
from filecleanup.storage.filesystem import FilesystemStorage
from filecleanup.storage.gcs import GcsStorage
from filecleanup.storage.http import open_http
from filecleanup.storage.limits import Limiter
from filecleanup.storage.s3 import S3Storage


def open_storage(name: str, config: StorageConfig) -> Backend:
    """The backend for one configured storage, without the concurrency limit: what it can do besides
    deleting (storage/base.py's capabilities) is what its configuration gives it, checked once when it
    is held to its limits (:class:`ConcurrencyLimited`)."""
    match config:
        case HttpStorageConfig():
            return open_http(name, config)
        case S3StorageConfig():
            return S3Storage(name, config)
        case GcsStorageConfig():
            return GcsStorage(name, config)
        case AzureBlobStorageConfig():
            return AzureBlobStorage(name, config)
        case FilesystemStorageConfig():
            return FilesystemStorage(name, config)


def open_storages(config: OperatorConfig, metrics: Metrics) -> dict[str, Storage]:
    """One client per configured storage, each held to its limits across all objects (its rate limit,
    and an adaptive in-flight limit up to maxConcurrentRequests); the caller closes them with
    ``aclose``."""
    return {
        name: ConcurrencyLimited(
            open_storage(name, storage),
            Limiter(
                storage.max_concurrent_requests,
                rate_limit=storage.rate_limit,
                adaptive=storage.adaptive_concurrency,
            ),
            metrics,
        )
        for name, storage in config.storages.items()
    }
