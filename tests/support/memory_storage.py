"""A storage in memory for in-process tests of whole runs: it deletes (confirming every key but the
failing ones), holds whole objects (manifests and their reports, pinned by a hash as an ETag pins
them), can refuse writes as a storage that is down, and can hold one call at a gate while a test
changes the world."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from filecleanup.storage.base import ChunkResult, ObjectChanged, ObjectMissing, ObjectPart, StorageUnavailable


@dataclass
class MemoryStorage:
    objects: dict[str, bytes] = field(default_factory=dict)
    failing: frozenset[str] = frozenset()  # every delete of these fails
    for_good: bool = False  # ...with an error no retry can fix
    refused_writes: int = 0  # the first writes of whole objects, refused as by a storage that is down
    hold_at: int | None = None  # the call that sends this many keys in all waits until ``gate`` opens
    name: str = "photos"
    max_keys_per_call: int | None = None
    sent: list[str] = field(default_factory=list)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # set when a call waits at the gate
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        self.sent += keys
        if self.hold_at is not None and len(self.sent) == self.hold_at:
            self.held.set()
            await self.gate.wait()
        failed = [key for key in keys if key in self.failing]
        confirmed = [key for key in keys if key not in self.failing]
        permanent = failed if self.for_good else ()
        return ChunkResult.from_reply(keys, confirmed, dict.fromkeys(failed, "stuck"), permanent)

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        if key not in self.objects:
            raise ObjectMissing(key)
        data = self.objects[key]
        current = hashlib.sha256(data).hexdigest()
        if version and version != current:
            raise ObjectChanged(key)
        return ObjectPart(data[offset : offset + size], current)

    async def write(self, key: str, data: bytes) -> None:
        if self.refused_writes:
            self.refused_writes -= 1
            raise StorageUnavailable(f"storage {self.name}: PUT answered 503")
        self.objects[key] = data

    async def aclose(self) -> None:
        """Nothing to release."""
