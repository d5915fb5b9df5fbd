"""The reference storage server, run in-process on loopback for backend tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from filecleanup.api.config import HttpStorageConfig
from filecleanup.storage.http import HttpStorage
from tools.devkit.examples import storage_server as reference_server
from tools.devkit.storages import OPEN_POLICY, Directory


def http_backend(url: str, **settings: object) -> HttpStorage:
    """The HTTP backend for a loopback test server (where a token may travel in cleartext)."""
    config = {"type": "http", "url": url, "policy": OPEN_POLICY, "allowPlainHttp": True, **settings}
    return HttpStorage("photos", HttpStorageConfig.model_validate(config))


class RunningServer(Directory):
    def __init__(
        self, url: str, root: Path, state: reference_server.ServerState, runner: web.AppRunner
    ) -> None:
        super().__init__(root)
        self.url = url
        self.state = state
        self._runner = runner

    async def stop(self) -> None:
        await self._runner.cleanup()

    def fault(self, **faults: object) -> None:
        self.state.faults = reference_server.Faults(**faults)  # type: ignore[arg-type]


@pytest.fixture
async def storage_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    (tmp_path / "root").mkdir()
    app = reference_server.make_app(tmp_path / "root")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield RunningServer(
            f"http://127.0.0.1:{port}/delete", tmp_path / "root", app[reference_server.STATE], runner
        )
    finally:
        await runner.cleanup()
