"""The sync client connects as the async one does, from a kubeconfig file and a context."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from filecleanup.album.client import FileCleanupClient, SyncFileCleanupClient

ALBUM_42 = {
    "apiVersion": "filecleanup.dev/v1alpha1",
    "kind": "FileCleanup",
    "metadata": {"name": "album-42", "namespace": "photos", "labels": {"filecleanup.dev/album": "42"}},
    "spec": {"keys": ["albums/42/a.jpg"]},
    "status": {"phase": "Succeeded", "total": 1, "deleted": 1},
}


class ApiServer(BaseHTTPRequestHandler):
    """Lists album-42 to whoever asks, and remembers what was asked."""

    asked: list[str]

    def do_GET(self) -> None:
        self.asked.append(self.path)
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": [ALBUM_42]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (ApiServer,), {"asked": asked}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(path: Path, server: str) -> Path:
    """Two contexts: the current one points nowhere, ``team`` at ``server``."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}},
                    {"name": "local", "cluster": {"server": server}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "current", "context": {"cluster": "nowhere", "user": "u"}},
                    {"name": "team", "context": {"cluster": "local", "user": "u"}},
                ],
                "current-context": "current",
            }
        )
    )
    return path


def test_the_sync_client_connects_with_a_kubeconfig_and_a_context(
    api_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    server, asked = api_server
    config = kubeconfig(tmp_path / "kubeconfig", server)
    with SyncFileCleanupClient.connect(kubeconfig=str(config), context="team") as client:
        album = client.status("42", namespace="photos")
        listed = client.list_cleanups(namespace="photos")
    assert (album.phase, album.total, album.deleted) == ("Succeeded", 1, 1)
    assert [obj["metadata"]["name"] for obj in listed] == ["album-42"]
    assert asked[0].startswith("/apis/filecleanup.dev/v1alpha1/namespaces/photos/filecleanups?")


async def test_the_async_client_takes_the_same_arguments(
    api_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    server, _ = api_server
    config = kubeconfig(tmp_path / "kubeconfig", server)
    async with await FileCleanupClient.connect(kubeconfig=str(config), context="team") as client:
        assert (await client.status("42", namespace="photos")).phase == "Succeeded"
