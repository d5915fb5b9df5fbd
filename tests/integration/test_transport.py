"""The storage transport against the reference server in a process of its own: calls cancelled at any
moment must never cost a place among the storage's ``maxConcurrentRequests``."""

from __future__ import annotations

import asyncio

from filecleanup.api.config import HttpStorageConfig
from filecleanup.storage.http import HttpObjects, open_http
from tools.devkit.storages import StorageProcess

PLACES = 8
LATENCY_SECONDS = 0.05


async def test_calls_cancelled_while_others_hold_the_connections_leave_every_place_free(
    storage: StorageProcess,
) -> None:
    """Reads cancelled at any moment while deletes hold connections (the reads ahead of a manifest, a
    shutdown) must not take a place for good. httpcore's pool keeps the new connection of a request
    cancelled while it waited for one; a pool bound to the calls' limit would fill with them and let
    fewer calls through, then none."""
    (storage.root / "m.txt").write_bytes(b"a/1.jpg\n" * 1000)
    backend = open_http(
        "photos",
        HttpStorageConfig.model_validate({**storage.operator_storage(), "maxConcurrentRequests": PLACES}),
    )
    assert isinstance(backend, HttpObjects)
    storage.fault(latency_seconds=LATENCY_SECONDS, read_latency_seconds=LATENCY_SECONDS)
    for step in range(60):  # cancelled anywhere: waiting for a place, connecting, sending, reading
        deletes = [asyncio.ensure_future(backend.delete([f"k/{step}-{n}"])) for n in range(PLACES - 2)]
        reads = [asyncio.ensure_future(backend.read("m.txt", 0, 100)) for _ in range(4)]
        await asyncio.sleep(LATENCY_SECONDS * (step % 12) / 10)
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, *deletes, return_exceptions=True)
    storage.reset()
    storage.fault(hold_from_call=1)
    held = [asyncio.ensure_future(backend.delete([f"h/{n}"])) for n in range(PLACES)]
    for _ in range(500):  # every place free: all of them reach the storage at once (long before any
        if await held_now(storage) == PLACES:  # times out: a call that did would free its place)
            break
        await asyncio.sleep(0.02)
    held_at_once = await held_now(storage)
    storage.fault()  # lets the held calls go
    await asyncio.gather(*held)
    await backend.aclose()
    assert held_at_once == PLACES


async def held_now(storage: StorageProcess) -> int:
    return int((await asyncio.to_thread(storage.stats, summary=True))["held"])
