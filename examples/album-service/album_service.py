"""An example album service: deleting an album answers 202 at once; its files go shortly after.

``DELETE /albums/{id}`` deletes the album's rows and writes an outbox row in the same SQLite
transaction, then answers. A relay, embedded in the app's lifespan, turns the outbox row into a
FileCleanup; the operator deletes the files. ``GET /albums/{id}/cleanup`` shows the progress.

    ALBUM_DB=albums.db FILECLEANUP_NAMESPACE=photos uvicorn album_service:app
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from filecleanup.album.client import FileCleanupClient
from filecleanup.album.outbox import Dialect, Relay, create_table, enqueue

DATABASE = Path(os.environ.get("ALBUM_DB", "albums.db"))
NAMESPACE = os.environ.get("FILECLEANUP_NAMESPACE", "default")


def connect() -> sqlite3.Connection:
    return sqlite3.connect(DATABASE, timeout=30)


def init_db(path: Path, albums: dict[str, Iterable[str]]) -> None:
    """Create the tables and add albums with their photos' storage keys."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE IF NOT EXISTS albums (id TEXT PRIMARY KEY)")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS photos "
            "(id INTEGER PRIMARY KEY, album_id TEXT NOT NULL, storage_key TEXT NOT NULL)"
        )
        create_table(connection, Dialect.SQLITE)
        for album_id, keys in albums.items():
            connection.execute("INSERT INTO albums (id) VALUES (?)", (album_id,))
            connection.executemany(
                "INSERT INTO photos (album_id, storage_key) VALUES (?, ?)", [(album_id, key) for key in keys]
            )


def delete_album_rows(album_id: str) -> int | None:
    """Delete the album and queue its files' cleanup, in one transaction. None if there is no such album."""
    with contextlib.closing(connect()) as connection, connection:
        keys = [
            row[0]
            for row in connection.execute("SELECT storage_key FROM photos WHERE album_id = ?", (album_id,))
        ]
        if connection.execute("DELETE FROM albums WHERE id = ?", (album_id,)).rowcount == 0:
            return None
        connection.execute("DELETE FROM photos WHERE album_id = ?", (album_id,))
        if keys:
            enqueue(connection, Dialect.SQLITE, album_id, keys, namespace=NAMESPACE)
        return len(keys)


async def delete_album(request: Request) -> JSONResponse:
    album_id = request.path_params["album_id"]
    files = await asyncio.to_thread(delete_album_rows, album_id)
    if files is None:
        return JSONResponse({"error": f"no album {album_id}"}, status_code=404)
    return JSONResponse({"album": album_id, "files": files, "cleanup": "queued"}, status_code=202)


async def cleanup_status(request: Request) -> JSONResponse:
    client: FileCleanupClient = request.app.state.client
    album = await client.status(request.path_params["album_id"], namespace=NAMESPACE)
    return JSONResponse(
        {"album": album.album, "phase": album.phase, "total": album.total, "deleted": album.deleted}
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with await FileCleanupClient.connect() as client:
        app.state.client = client
        stop = asyncio.Event()
        relay = asyncio.create_task(Relay(connect, Dialect.SQLITE, client, poll_seconds=0.2).run(stop))
        try:
            yield
        finally:
            stop.set()
            await relay


app = Starlette(
    routes=[
        Route("/albums/{album_id}", delete_album, methods=["DELETE"]),
        Route("/albums/{album_id}/cleanup", cleanup_status, methods=["GET"]),
    ],
    lifespan=lifespan,
)
