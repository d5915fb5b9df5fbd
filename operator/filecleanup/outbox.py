"""A transactional outbox, so that no cleanup is lost between the album's DB commit and its FileCleanup.

The album service writes an outbox row in the same transaction as the album delete::

    with connection:                                   # one transaction
        connection.execute("DELETE FROM photos WHERE album_id = ?", (album_id,))
        enqueue(connection, Dialect.SQLITE, album_id, keys, namespace="photos")

A :class:`Relay` (``filecleanup relay``, or embedded as a coroutine) then submits each row through the
idempotent client and marks it delivered only after the API server accepted the objects. Delivery is
at least once; since submissions are idempotent, the effect is exactly once, even with several relays.

Plain DB-API 2.0: ``sqlite3`` and PostgreSQL (``psycopg``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from filecleanup.client import FileCleanupClient, SubmitConflict

TABLE = "filecleanup_outbox"
logger = logging.getLogger(__name__)


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"

    @property
    def placeholder(self) -> str:
        return "?" if self is Dialect.SQLITE else "%s"

    @property
    def id_column(self) -> str:
        return "INTEGER PRIMARY KEY AUTOINCREMENT" if self is Dialect.SQLITE else "BIGSERIAL PRIMARY KEY"


class State(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"  # a conflicting object exists: retrying cannot help, a person must look


class Connection(Protocol):
    def cursor(self) -> Any: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


def create_table(connection: Connection, dialect: Dialect) -> None:
    cursor = connection.cursor()
    cursor.execute(
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            id {dialect.id_column},
            album_id TEXT NOT NULL,
            namespace TEXT NOT NULL,
            storage TEXT,
            keys TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT '{State.PENDING}',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            delivered_at DOUBLE PRECISION
        )"""
    )
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (state, next_attempt_at)")


def enqueue(
    connection: Connection,
    dialect: Dialect,
    album_id: str,
    keys: Iterable[str],
    *,
    namespace: str = "default",
    storage: str | None = None,
) -> None:
    """Add a row in the caller's transaction; the caller commits it together with the album delete."""
    now = time.time()
    mark = dialect.placeholder
    connection.cursor().execute(
        f"INSERT INTO {TABLE} (album_id, namespace, storage, keys, created_at, next_attempt_at) "  # noqa: S608
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
        (album_id, namespace, storage, json.dumps(list(keys)), now, now),
    )


@dataclass(frozen=True)
class Row:
    id: int
    album_id: str
    namespace: str
    storage: str | None
    keys: list[str]
    attempts: int


class Relay:
    """Drains the outbox into FileCleanups, backing off per row while the API server refuses."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        dialect: Dialect,
        client: FileCleanupClient,
        *,
        batch: int = 50,
        poll_seconds: float = 1.0,
        initial_backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        self._connect = connect
        self._dialect = dialect
        self._client = client
        self._batch = batch
        self._poll_seconds = poll_seconds
        self._initial_backoff = initial_backoff_seconds
        self._max_backoff = max_backoff_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; polls when the outbox is empty."""
        while not stop.is_set():
            delivered = await self.run_once()
            if not delivered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._poll_seconds)

    async def run_once(self) -> int:
        """Submit the rows that are due; how many were delivered."""
        rows = await asyncio.to_thread(self._due_rows)
        delivered = 0
        for row in rows:
            try:
                await self._client.submit(
                    row.album_id, row.keys, namespace=row.namespace, storage=row.storage
                )
            except SubmitConflict as error:
                logger.error("Outbox row %d (album %s) rejected: %s", row.id, row.album_id, error)  # noqa: TRY400
                await asyncio.to_thread(self._finish, row, State.REJECTED, str(error))
            except Exception as error:  # noqa: BLE001  (any failure: keep the row, try again later)
                delay = min(self._max_backoff, self._initial_backoff * 2**row.attempts)
                logger.warning(
                    "Outbox row %d (album %s) not delivered, next try in %.0f s: %s",
                    row.id,
                    row.album_id,
                    delay,
                    error,
                )
                await asyncio.to_thread(self._postpone, row, delay, f"{type(error).__name__}: {error}")
            else:
                await asyncio.to_thread(self._finish, row, State.DELIVERED, None)
                delivered += 1
        return delivered

    def _due_rows(self) -> list[Row]:
        mark = self._dialect.placeholder
        with contextlib.closing(self._connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(
                f"SELECT id, album_id, namespace, storage, keys, attempts FROM {TABLE} "  # noqa: S608
                f"WHERE state = {mark} AND next_attempt_at <= {mark} ORDER BY id LIMIT {mark}",
                (State.PENDING.value, time.time(), self._batch),
            )
            return [
                Row(
                    id=row[0],
                    album_id=row[1],
                    namespace=row[2],
                    storage=row[3],
                    keys=json.loads(row[4]),
                    attempts=row[5],
                )
                for row in cursor.fetchall()
            ]

    def _finish(self, row: Row, state: State, error: str | None) -> None:
        mark = self._dialect.placeholder
        with contextlib.closing(self._connect()) as connection:
            connection.cursor().execute(
                f"UPDATE {TABLE} SET state = {mark}, attempts = attempts + 1, last_error = {mark}, "  # noqa: S608
                f"delivered_at = {mark} WHERE id = {mark}",
                (state.value, error, time.time() if state is State.DELIVERED else None, row.id),
            )
            connection.commit()

    def _postpone(self, row: Row, delay: float, error: str) -> None:
        mark = self._dialect.placeholder
        with contextlib.closing(self._connect()) as connection:
            connection.cursor().execute(
                f"UPDATE {TABLE} SET attempts = attempts + 1, last_error = {mark}, next_attempt_at = {mark} "  # noqa: S608
                f"WHERE id = {mark}",
                (error[:1000], time.time() + delay, row.id),
            )
            connection.commit()


def connect_url(url: str) -> tuple[Callable[[], Connection], Dialect]:
    """A connection factory for ``sqlite:///path/to.db`` or ``postgresql://user@host/db``."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return (lambda: sqlite3.connect(path, timeout=30)), Dialect.SQLITE
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: PLC0415  (optional: only PostgreSQL users install it)
        except ImportError as error:
            raise ValueError(
                "PostgreSQL needs psycopg: pip install 'filecleanup-operator[postgres]'"
            ) from error
        return (lambda: psycopg.connect(url)), Dialect.POSTGRESQL
    raise ValueError(
        f"unsupported database URL {url.split(':', 1)[0]}://...; use sqlite:/// or postgresql://"
    )
