"""The one HTTP transport of the network backends (HTTP and S3): separate connect and read timeouts,
a pool sized to the storage's call cap, no retries, and the same reading of a failed call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from filecleanup.config import RemoteStorageBase
from filecleanup.storage.base import ChunkResult, StorageUnavailable


class BatchDeleteTransport:
    def __init__(self, name: str, config: RemoteStorageBase) -> None:
        self._name = name
        self._read_timeout = config.read_timeout_seconds
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=config.connect_timeout_seconds,
                read=config.read_timeout_seconds,
                write=config.read_timeout_seconds,
                pool=None,  # the caller bounds concurrency to the pool size
            ),
            limits=httpx.Limits(
                max_connections=config.max_concurrent_requests,
                max_keepalive_connections=config.max_concurrent_requests,
            ),
        )

    async def post(self, url: str, keys: Sequence[str], **request: Any) -> httpx.Response | ChunkResult:
        """The reply, or the chunk's failure when the call failed after the request may have reached the
        storage. Raises :class:`StorageUnavailable` when it could not connect."""
        try:
            return await self._client.post(url, **request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise StorageUnavailable(f"cannot connect to storage {self._name}: {error}") from error
        except httpx.ReadTimeout:
            return ChunkResult.all_failed(keys, f"no reply within {self._read_timeout:g} s: outcome unknown")
        except httpx.TransportError as error:
            return ChunkResult.all_failed(keys, f"call failed: {type(error).__name__}: {error}")

    async def aclose(self) -> None:
        await self._client.aclose()
