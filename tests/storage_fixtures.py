"""The reference storage server, run in-process on loopback for backend tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from filecleanup.testing.storage_server import STATE, Faults, ServerState, make_app


@dataclass
class RunningServer:
    url: str
    root: Path
    state: ServerState

    def seed(self, keys: list[str]) -> None:
        for key in keys:
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"photo")

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def fault(self, **faults: object) -> None:
        self.state.faults = Faults(**faults)  # type: ignore[arg-type]


@pytest.fixture
async def storage_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    app = make_app(tmp_path / "root")
    (tmp_path / "root").mkdir()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield RunningServer(f"http://127.0.0.1:{port}/delete", tmp_path / "root", app[STATE])
    finally:
        await runner.cleanup()
