"""Layer album. A transactional outbox, so that no cleanup is lost between the album's DB commit and its
FileCleanup.

The album service writes an outbox row in the same transaction as the album delete::

    with connection:                                   # one transaction
        connection.execute("DELETE FROM photos WHERE album_id = ?", (album_id,))
        enqueue(connection, Dialect.SQLITE, album_id, keys, namespace="photos")

A :class:`Relay` (``filecleanup relay``, or embedded as a coroutine) then submits each row through the
idempotent client and marks it delivered only after the API server accepted the objects. Delivery is
at least once; since submissions are idempotent, the effect is exactly once, even with several relays.
Each relay claims the rows it works on for a while (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a write
transaction on SQLite), so that relays seldom submit the same row twice.

The table is made by ``filecleanup outbox init`` (or :func:`create_table`); the relay and the commands
that look after the rows need it there, and say so rather than make it.

A row that can never succeed (an album whose FileCleanup exists with other keys, keys or an album id
the API refuses) is set aside as ``dead`` with the reason, to be listed and redriven by a person
(``filecleanup outbox list|redrive``). Delivered rows are pruned after a retention period.

Plain DB-API 2.0: ``sqlite3`` and PostgreSQL (``psycopg``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Protocol

from kubernetes.aio.client import ApiException

from filecleanup.album.client import FileCleanupClient, SubmitConflict
from filecleanup.api.kube import describe_api_error
from filecleanup.decide.backoff import doubling

TABLE = "filecleanup_outbox"
logger = logging.getLogger(__name__)
# What the API server refuses for good: a schema or CEL rule, or a malformed request.
REFUSED_FOR_GOOD = {HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY}
DAY = 86_400.0


class OutboxMissing(Exception):  # noqa: N818  (a state of the database, not an error of the code)
    """The database has no outbox table (for SQLite, perhaps no database file): ``filecleanup outbox init``
    makes it."""


class Dialect(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"

    @property
    def placeholder(self) -> str:
        return "?" if self is Dialect.SQLITE else "%s"

    @property
    def id_column(self) -> str:
        return "INTEGER PRIMARY KEY AUTOINCREMENT" if self is Dialect.SQLITE else "BIGSERIAL PRIMARY KEY"

    @property
    def table_named(self) -> str:
        """A query of one row whose one column is NULL, or no row, unless the table it is given exists."""
        if self is Dialect.SQLITE:
            return "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?"
        return "SELECT to_regclass(%s)"


class State(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # can never succeed as it is: a person must look (filecleanup outbox list/redrive)


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
            delivered_at DOUBLE PRECISION,
            start_after DOUBLE PRECISION
        )"""
    )
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (state, next_attempt_at)")
    # A table made before rows carried a grace period.
    if dialect is Dialect.POSTGRESQL:
        cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS start_after DOUBLE PRECISION")
    else:
        cursor.execute(f"PRAGMA table_info({TABLE})")
        if "start_after" not in {column[1] for column in cursor.fetchall()}:
            cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN start_after DOUBLE PRECISION")
    # Rows set aside by 0.1.0, under the name it used for them.
    cursor.execute(f"UPDATE {TABLE} SET state = '{State.DEAD}' WHERE state = 'rejected'")  # noqa: S608


def enqueue(
    connection: Connection,
    dialect: Dialect,
    album_id: str,
    keys: Iterable[str],
    *,
    namespace: str = "default",
    storage: str | None = None,
    grace_seconds: float | None = None,
) -> None:
    """Add a row in the caller's transaction; the caller commits it together with the album delete.

    With ``grace_seconds``, nothing is deleted until that long after the album's deletion (this
    transaction), and ``filecleanup undo`` cancels the album's objects until then."""
    now = time.time()
    start_after = None if grace_seconds is None else now + grace_seconds
    mark = dialect.placeholder
    connection.cursor().execute(
        f"INSERT INTO {TABLE} (album_id, namespace, storage, keys, created_at, next_attempt_at, "  # noqa: S608
        f"start_after) VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
        (album_id, namespace, storage, json.dumps(list(keys)), now, now, start_after),
    )


@dataclass(frozen=True)
class Row:
    id: int
    album_id: str
    namespace: str
    storage: str | None
    keys: list[str]
    attempts: int
    created_at: float  # Unix time: the album's deletion (this row's transaction)
    start_after: float | None = None  # Unix time: nothing is deleted before it


@dataclass(frozen=True)
class Listed:
    """A row as ``filecleanup outbox list`` shows it."""

    id: int
    album_id: str
    namespace: str
    state: str
    attempts: int
    last_error: str | None
    created_at: float


@dataclass(frozen=True)
class Counts:
    pending: int
    dead: int
    delivered: int
    oldest_pending_seconds: float  # 0 when nothing is pending


def dead_reason(error: Exception) -> str | None:
    """Why a failed submission can never succeed as it is; None when trying again may help."""
    if isinstance(error, SubmitConflict):
        return f"conflict: {error}"
    if isinstance(error, ValueError):
        return f"invalid: {error}"
    if isinstance(error, ApiException) and error.status in REFUSED_FOR_GOOD:
        return f"refused by the API server: {describe_api_error(error)}"
    return None


class Outbox:
    """The outbox table: claiming due rows, marking them, and what a person needs to look after it."""

    def __init__(self, connect: Callable[[], Connection], dialect: Dialect) -> None:
        self._connect = connect
        self._dialect = dialect

    def create(self) -> None:
        """Create the table, or bring one an older version made up to date (:func:`create_table`)."""
        with contextlib.closing(self._connect()) as connection:
            create_table(connection, self._dialect)
            connection.commit()

    def has_table(self) -> bool:
        """Whether the table is there; for SQLite opened by :func:`connect_url`, no database file is made
        by asking."""
        try:
            connection = self._connect()
        except sqlite3.OperationalError:  # opened read-write only: no database file there
            return False
        with contextlib.closing(connection):
            cursor = connection.cursor()
            cursor.execute(self._dialect.table_named, (TABLE,))
            found = cursor.fetchone()
        return found is not None and found[0] is not None

    def claim(self, batch: int, claim_seconds: float) -> list[Row]:
        """The due rows, claimed for ``claim_seconds``: another relay skips them meanwhile."""
        mark, now = self._dialect.placeholder, time.time()
        with contextlib.closing(self._connect()) as connection:
            cursor = connection.cursor()
            if self._dialect is Dialect.SQLITE:
                cursor.execute("BEGIN IMMEDIATE")  # the write lock now: no other relay claims meanwhile
            locking = " FOR UPDATE SKIP LOCKED" if self._dialect is Dialect.POSTGRESQL else ""
            cursor.execute(
                "SELECT id, album_id, namespace, storage, keys, attempts, created_at, start_after "  # noqa: S608
                f"FROM {TABLE} WHERE state = {mark} AND next_attempt_at <= {mark} "
                f"ORDER BY id LIMIT {mark}{locking}",
                (State.PENDING.value, now, batch),
            )
            rows = [
                Row(
                    id=r[0],
                    album_id=r[1],
                    namespace=r[2],
                    storage=r[3],
                    keys=json.loads(r[4]),
                    attempts=r[5],
                    created_at=r[6],
                    start_after=r[7],
                )
                for r in cursor.fetchall()
            ]
            for row in rows:
                cursor.execute(
                    f"UPDATE {TABLE} SET next_attempt_at = {mark} WHERE id = {mark}",  # noqa: S608
                    (now + claim_seconds, row.id),
                )
            connection.commit()
            return rows

    def finish(self, row: Row, state: State, error: str | None) -> None:
        mark = self._dialect.placeholder
        self._execute(
            f"UPDATE {TABLE} SET state = {mark}, attempts = attempts + 1, last_error = {mark}, "  # noqa: S608
            f"delivered_at = {mark} WHERE id = {mark}",
            (state.value, error, time.time() if state is State.DELIVERED else None, row.id),
        )

    def postpone(self, row: Row, delay: float, error: str) -> None:
        mark = self._dialect.placeholder
        self._execute(
            f"UPDATE {TABLE} SET attempts = attempts + 1, last_error = {mark}, next_attempt_at = {mark} "  # noqa: S608
            f"WHERE id = {mark}",
            (error[:1000], time.time() + delay, row.id),
        )

    def prune(self, retention_seconds: float) -> int:
        """Delete delivered rows older than the retention; how many went."""
        mark = self._dialect.placeholder
        return self._execute(
            f"DELETE FROM {TABLE} WHERE state = {mark} AND delivered_at < {mark}",  # noqa: S608
            (State.DELIVERED.value, time.time() - retention_seconds),
        )

    def redrive(self, ids: Sequence[int] | None = None) -> int:
        """Dead rows back to pending, due now (all of them when ``ids`` is None); how many."""
        mark = self._dialect.placeholder
        which = "" if ids is None else f" AND id IN ({', '.join(mark for _ in ids)})"
        return self._execute(
            f"UPDATE {TABLE} SET state = {mark}, attempts = 0, next_attempt_at = {mark} "  # noqa: S608
            f"WHERE state = {mark}{which}",
            (State.PENDING.value, time.time(), State.DEAD.value, *(ids or ())),
        )

    def rows(self, state: State | None = None, limit: int = 1000) -> list[Listed]:
        mark = self._dialect.placeholder
        where, parameters = (f"WHERE state = {mark} ", (state.value,)) if state else ("", ())
        with contextlib.closing(self._connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(
                f"SELECT id, album_id, namespace, state, attempts, last_error, created_at FROM {TABLE} "  # noqa: S608
                f"{where}ORDER BY id LIMIT {mark}",
                (*parameters, limit),
            )
            return [Listed(*row) for row in cursor.fetchall()]

    def counts(self) -> Counts:
        with contextlib.closing(self._connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(f"SELECT state, COUNT(*), MIN(created_at) FROM {TABLE} GROUP BY state")  # noqa: S608
            found = {state: (count, oldest) for state, count, oldest in cursor.fetchall()}
        pending, oldest = found.get(State.PENDING.value, (0, None))
        return Counts(
            pending=pending,
            dead=found.get(State.DEAD.value, (0, None))[0],
            delivered=found.get(State.DELIVERED.value, (0, None))[0],
            oldest_pending_seconds=max(0.0, time.time() - oldest) if oldest is not None else 0.0,
        )

    def _execute(self, statement: str, parameters: Sequence[object]) -> int:
        with contextlib.closing(self._connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(statement, parameters)
            connection.commit()
            return int(cursor.rowcount)


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
        claim_seconds: float = 60.0,
        retention_seconds: float = 7 * DAY,
    ) -> None:
        self.outbox = Outbox(connect, dialect)
        self._client = client
        self._batch = batch
        self._poll_seconds = poll_seconds
        self._initial_backoff = initial_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._claim_seconds = claim_seconds
        self._retention = retention_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; polls when the outbox is empty."""
        while not stop.is_set():
            delivered = await self.run_once()
            if not delivered:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._poll_seconds)

    async def run_once(self) -> int:
        """Prune old delivered rows, then submit the rows that are due; how many were delivered."""
        outbox = self.outbox
        await asyncio.to_thread(outbox.prune, self._retention)
        rows = await asyncio.to_thread(outbox.claim, self._batch, self._claim_seconds)
        delivered = 0
        for row in rows:
            try:
                start_after = None if row.start_after is None else _utc(row.start_after)
                await self._client.submit(
                    row.album_id,
                    row.keys,
                    namespace=row.namespace,
                    storage=row.storage,
                    start_after=start_after,
                    deleted_at=_utc(row.created_at),
                )
            except Exception as error:  # noqa: BLE001  (every failure is classified below)
                reason = dead_reason(error)
                if reason is not None:
                    logger.error(  # noqa: TRY400  (the reason says it all; no traceback)
                        "Outbox row %d (album %s) set aside as dead: %s", row.id, row.album_id, reason
                    )
                    await asyncio.to_thread(outbox.finish, row, State.DEAD, reason)
                    continue
                delay = doubling(self._initial_backoff, self._max_backoff, row.attempts)
                # An ApiException's text carries every response header: the server's message is enough.
                why = (
                    describe_api_error(error)
                    if isinstance(error, ApiException)
                    else f"{type(error).__name__}: {error}"
                )
                logger.warning(
                    "Outbox row %d (album %s) not delivered, next try in %.0f s: %s",
                    row.id,
                    row.album_id,
                    delay,
                    why,
                )
                await asyncio.to_thread(outbox.postpone, row, delay, why)
            else:
                await asyncio.to_thread(outbox.finish, row, State.DELIVERED, None)
                delivered += 1
        return delivered


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def connect_url(url: str, *, create: bool = False) -> tuple[Callable[[], Connection], Dialect]:
    """A connection factory for ``sqlite:///path/to.db`` or ``postgresql://user@host/db``. A SQLite
    database file is made only with ``create``: a mistyped path must not leave an empty database."""
    if url.startswith("sqlite:///"):
        path = urllib.parse.quote(url.removeprefix("sqlite:///"))
        mode = "rwc" if create else "rw"
        return (lambda: sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=30)), Dialect.SQLITE
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
