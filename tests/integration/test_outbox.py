"""The transactional outbox through an API-server outage, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from kubernetes import config as sync_config
from kubernetes.aio import config as aio_config
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from filecleanup.album.cli_outbox import OutboxCollector
from filecleanup.album.client import FileCleanupClient
from filecleanup.album.outbox import (
    DAY,
    TABLE,
    Connection,
    Dialect,
    Outbox,
    Relay,
    State,
    create_table,
    enqueue,
)
from filecleanup.api.models import ALBUM_DELETED_AT_ANNOTATION, ALBUM_LABEL
from tests.conftest import CRD_FILE
from tests.kube import Kube
from tests.postgres import PostgresServer
from tools.envtest.controlplane import ControlPlane, obtain_binaries

Database = tuple[Callable[[], Connection], Dialect]
ALBUMS = 20


@pytest.fixture(scope="module")
def private_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of its own: these tests stop and restart its API server."""
    plane = ControlPlane(tmp_path_factory.mktemp("outage-plane"))
    plane.start(obtain_binaries())
    try:
        admin = Kube(sync_config.new_client_from_config(config_file=str(plane.kubeconfig)))  # type: ignore[no-untyped-call]
        admin.apply_crd(yaml.safe_load(CRD_FILE.read_text()))
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def private_kube(private_plane: ControlPlane) -> Kube:
    return Kube(sync_config.new_client_from_config(config_file=str(private_plane.kubeconfig)))  # type: ignore[no-untyped-call]


@pytest.fixture(params=[Dialect.SQLITE, Dialect.POSTGRESQL])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    dialect: Dialect = request.param
    if dialect is Dialect.SQLITE:
        path = tmp_path / "albums.db"

        def connect() -> Connection:
            return sqlite3.connect(path, timeout=30)

        server = None
    else:
        server = PostgresServer()
        server.start()
        url = server.url

        def connect() -> Connection:
            return psycopg.connect(url)

    with contextlib.closing(connect()) as connection:
        create_table(connection, dialect)
        connection.commit()
    try:
        yield connect, dialect
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
async def client(private_plane: ControlPlane) -> AsyncIterator[FileCleanupClient]:
    """A client of the private control plane (the suite's ``cleanup_client`` talks to the shared one)."""
    api = await aio_config.new_client_from_config(config_file=str(private_plane.kubeconfig))  # type: ignore[no-untyped-call]
    async with FileCleanupClient(api) as the_client:
        yield the_client


def album_keys(album: int) -> list[str]:
    return [f"albums/{album}/photo-{i}.jpg" for i in range(album + 1)]


def states(connect: Callable[[], Connection]) -> list[tuple[str, int]]:
    with contextlib.closing(connect()) as connection:
        cursor = connection.cursor()
        cursor.execute(f"SELECT state, attempts FROM {TABLE} ORDER BY id")  # noqa: S608
        return [(row[0], row[1]) for row in cursor.fetchall()]


async def test_every_cleanup_is_created_once_after_an_api_server_outage(
    private_plane: ControlPlane, private_kube: Kube, database: Database, client: FileCleanupClient
) -> None:
    connect, dialect = database
    namespace = private_kube.create_namespace(f"outbox-{dialect}")
    # Two relays at once: delivery is at least once, so both may submit a row; the effect must not double.
    relays = [
        Relay(connect, dialect, client, poll_seconds=0.1, initial_backoff_seconds=0.2, max_backoff_seconds=1)
        for _ in range(2)
    ]
    stop = asyncio.Event()
    running = [asyncio.create_task(relay.run(stop)) for relay in relays]
    try:
        await asyncio.to_thread(private_plane.stop_apiserver)
        for album in range(ALBUMS):  # the album service commits its deletes while the API server is down
            with contextlib.closing(connect()) as connection:
                enqueue(connection, dialect, str(album), album_keys(album), namespace=namespace)
                connection.commit()
        await asyncio.sleep(2)
        during_outage = states(connect)
        assert len(during_outage) == ALBUMS
        assert all(state == State.PENDING for state, _ in during_outage)
        assert any(attempts >= 1 for _, attempts in during_outage)

        started = time.monotonic()
        await asyncio.to_thread(private_plane.start_apiserver, obtain_binaries())
        while any(state != State.DELIVERED for state, _ in states(connect)):
            assert time.monotonic() - started < 60, states(connect)
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*running)

    objects = await client.list_cleanups(namespace=namespace)
    assert sorted(obj["metadata"]["name"] for obj in objects) == sorted(
        f"album-{album}" for album in range(ALBUMS)
    )
    for obj in objects:
        album = int(obj["metadata"]["labels"][ALBUM_LABEL])
        assert obj["spec"]["keys"] == album_keys(album)


async def test_a_conflicting_row_is_set_aside_not_retried_forever(
    private_kube: Kube, database: Database, client: FileCleanupClient
) -> None:
    connect, dialect = database
    namespace = private_kube.create_namespace("conflict")
    await client.submit("9", ["albums/9/old.jpg"], namespace=namespace)
    with contextlib.closing(connect()) as connection:
        enqueue(connection, dialect, "9", ["albums/9/new.jpg"], namespace=namespace)
        connection.commit()
    relay = Relay(connect, dialect, client)
    assert await relay.run_once() == 0
    assert states(connect) == [(State.DEAD, 1)]
    (dead,) = relay.outbox.rows(State.DEAD)
    assert dead.last_error is not None and dead.last_error.startswith("conflict: ")

    # A person looks, removes the stale object, and redrives the row: it is delivered.
    private_kube.delete("filecleanup.dev/v1alpha1", "FileCleanup", "album-9", namespace=namespace)
    assert relay.outbox.redrive([dead.id]) == 1
    assert await relay.run_once() == 1
    assert states(connect) == [(State.DELIVERED, 1)]


async def test_rows_the_api_server_refuses_for_good_are_dead_with_the_reason(
    private_kube: Kube, database: Database, client: FileCleanupClient
) -> None:
    connect, dialect = database
    namespace = private_kube.create_namespace("refused")
    with contextlib.closing(connect()) as connection:
        enqueue(
            connection, dialect, "1", ["albums/1/../2/escape.jpg"], namespace=namespace
        )  # a CEL rule: 422
        enqueue(
            connection, dialect, "not an id!", ["albums/x.jpg"], namespace=namespace
        )  # the client refuses
        enqueue(connection, dialect, "3", ["albums/3/ok.jpg"], namespace=namespace)
        connection.commit()
    relay = Relay(connect, dialect, client)
    assert await relay.run_once() == 1
    dead = {row.album_id: row.last_error for row in relay.outbox.rows(State.DEAD)}
    assert dead["1"] is not None and dead["1"].startswith("refused by the API server: 422")
    assert dead["not an id!"] is not None and dead["not an id!"].startswith("invalid: album id")
    counts = relay.outbox.counts()
    assert (counts.pending, counts.dead, counts.delivered) == (0, 2, 1)
    assert await relay.run_once() == 0  # dead rows are not tried again


async def test_a_resource_quota_is_back_pressure_and_loses_nothing(
    private_kube: Kube, database: Database, client: FileCleanupClient
) -> None:
    connect, dialect = database
    namespace = private_kube.create_namespace("quota")
    quota = {"count/filecleanups.filecleanup.dev": "1"}
    private_kube.create(
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "fc"}, "spec": {"hard": quota}},
        namespace=namespace,
    )
    # What the quota controller would record (this control plane runs none); admission counts from here.
    private_kube.patch_status(
        "v1",
        "ResourceQuota",
        "fc",
        {"status": {"hard": quota, "used": {"count/filecleanups.filecleanup.dev": "0"}}},
        namespace=namespace,
    )
    with contextlib.closing(connect()) as connection:
        enqueue(connection, dialect, "1", ["albums/1/a.jpg"], namespace=namespace)
        enqueue(connection, dialect, "2", ["albums/2/a.jpg"], namespace=namespace)
        connection.commit()
    relay = Relay(connect, dialect, client, initial_backoff_seconds=0.1, max_backoff_seconds=0.1)
    assert await relay.run_once() == 1
    (waiting,) = relay.outbox.rows(State.PENDING)
    assert waiting.last_error is not None and waiting.last_error.startswith("403 Forbidden: ")
    assert "exceeded quota: fc" in waiting.last_error and "HTTP response headers" not in waiting.last_error
    private_kube.delete("filecleanup.dev/v1alpha1", "FileCleanup", "album-1", namespace=namespace)
    used = {"status": {"used": {"count/filecleanups.filecleanup.dev": "0"}}}  # the controller's recount
    private_kube.patch_status("v1", "ResourceQuota", "fc", used, namespace=namespace)
    await asyncio.sleep(0.2)
    assert await relay.run_once() == 1  # room again: the waiting album goes through
    assert states(connect) == [(State.DELIVERED, 1), (State.DELIVERED, 2)]  # (state, attempts)


def test_relays_claim_disjoint_rows_and_delivered_rows_are_pruned(database: Database) -> None:
    connect, dialect = database
    with contextlib.closing(connect()) as connection:
        for album in range(10):
            enqueue(connection, dialect, str(album), [f"albums/{album}/a.jpg"])
        connection.commit()
    outbox = Outbox(connect, dialect)
    first, second = outbox.claim(batch=6, claim_seconds=60), outbox.claim(batch=6, claim_seconds=60)
    assert len(first) == 6 and len(second) == 4
    assert not {row.id for row in first} & {row.id for row in second}
    assert outbox.claim(batch=6, claim_seconds=60) == []  # all claimed: nothing due
    assert outbox.counts().oldest_pending_seconds >= 0
    for row in first:
        outbox.finish(row, State.DELIVERED, None)
    assert outbox.prune(retention_seconds=3600) == 0  # delivered just now: kept
    assert outbox.prune(retention_seconds=0) == 6
    assert outbox.counts().delivered == 0


def test_relays_claiming_at_the_same_moment_get_disjoint_rows(database: Database) -> None:
    """Eight relays claim at once (threads released together): each row goes to exactly one of them,
    by row locks skipped on PostgreSQL and the write lock taken up front on SQLite."""
    connect, dialect = database
    with contextlib.closing(connect()) as connection:
        for album in range(24):
            enqueue(connection, dialect, str(album), [f"albums/{album}/a.jpg"])
        connection.commit()
    outbox, start = Outbox(connect, dialect), threading.Barrier(8)

    def relay() -> list[int]:
        start.wait()
        return [row.id for row in outbox.claim(batch=3, claim_seconds=60)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: relay(), range(8)))
    claimed = [row for rows in claims for row in rows]
    assert len(claimed) == len(set(claimed)) == 24


def test_the_relay_metrics_count_rows_by_state_and_age_the_oldest_pending(database: Database) -> None:
    connect, dialect = database
    with contextlib.closing(connect()) as connection:
        for album in range(5):
            enqueue(connection, dialect, str(album), [f"albums/{album}/a.jpg"])
        connection.commit()
    outbox = Outbox(connect, dialect)
    delivered, dead, *_ = outbox.claim(batch=5, claim_seconds=0)
    outbox.finish(delivered, State.DELIVERED, None)
    outbox.finish(dead, State.DEAD, "conflict: stale")
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox))
    scraped = {
        (sample.name, sample.labels.get("state", "")): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    rows = {state: scraped[("filecleanup_outbox_rows", state)] for state in ("pending", "dead", "delivered")}
    assert rows == {"pending": 3, "dead": 1, "delivered": 1}
    assert scraped[("filecleanup_outbox_oldest_pending_seconds", "")] >= 0


TRICKY_KEYS = [
    "albums/1/trailing space ",
    "albums/1/line\u2028separator",
    "albums/1/next\u0085line",
    "albums/1/carriage\rreturn",
    'albums/1/quote"and\\backslash',
    "albums/1/사진.jpg",
    "albums/1/\U0001f4f7.jpg",
]


def test_keys_come_out_of_the_outbox_exactly_as_they_went_in(database: Database) -> None:
    connect, dialect = database
    with contextlib.closing(connect()) as connection:
        enqueue(connection, dialect, "1", TRICKY_KEYS)
        connection.commit()
    (row,) = Outbox(connect, dialect).claim(batch=1, claim_seconds=60)
    assert row.keys == TRICKY_KEYS


async def test_a_rows_grace_period_and_erasure_deadline_count_from_the_albums_deletion(
    private_kube: Kube, database: Database, client: FileCleanupClient
) -> None:
    connect, dialect = database
    namespace = private_kube.create_namespace(f"outbox-grace-{dialect}")
    with contextlib.closing(connect()) as connection:
        enqueue(connection, dialect, "5", album_keys(5), namespace=namespace, grace_seconds=3 * DAY)
        enqueue(connection, dialect, "6", album_keys(6), namespace=namespace)
        connection.commit()
        cursor = connection.cursor()
        cursor.execute(f"SELECT created_at FROM {TABLE} ORDER BY id")  # noqa: S608
        deleted_at = [row[0] for row in cursor.fetchall()]
    assert await Relay(connect, dialect, client).run_once() == 2
    graced, plain = [await client.get(f"album-{album}", namespace=namespace) for album in (5, 6)]
    start = datetime.datetime.fromtimestamp(deleted_at[0] + 3 * DAY, datetime.UTC)
    assert graced["spec"]["startAfter"] == f"{start:%Y-%m-%dT%H:%M:%SZ}"
    assert "startAfter" not in plain["spec"]
    # The erasure deadline counts from the album's deletion, not from the delivery.
    for obj, deleted in zip((graced, plain), deleted_at, strict=True):
        moment = datetime.datetime.fromtimestamp(deleted, datetime.UTC)
        assert obj["metadata"]["annotations"][ALBUM_DELETED_AT_ANNOTATION] == f"{moment:%Y-%m-%dT%H:%M:%SZ}"


OUTBOX_BEFORE_GRACE = f"""CREATE TABLE {TABLE} (
    id {{id_column}}, album_id TEXT NOT NULL, namespace TEXT NOT NULL, storage TEXT, keys TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION
)"""


def test_a_table_made_before_grace_periods_gains_the_column_and_keeps_its_rows(database: Database) -> None:
    connect, dialect = database
    with contextlib.closing(connect()) as connection:
        cursor = connection.cursor()
        cursor.execute(f"DROP TABLE {TABLE}")
        cursor.execute(OUTBOX_BEFORE_GRACE.format(id_column=dialect.id_column))
        cursor.execute(
            f"INSERT INTO {TABLE} (album_id, namespace, keys, created_at, next_attempt_at) "  # noqa: S608
            "VALUES ('1', 'photos', '[\"albums/1/a.jpg\"]', 0, 0)"
        )
        connection.commit()
        for _ in range(2):  # every relay's start runs it: the second finds the column there
            create_table(connection, dialect)
            connection.commit()
        enqueue(connection, dialect, "2", ["albums/2/a.jpg"], grace_seconds=60)
        connection.commit()
    old, new = Outbox(connect, dialect).claim(batch=2, claim_seconds=60)
    assert (old.album_id, old.keys, old.start_after) == ("1", ["albums/1/a.jpg"], None)
    assert new.start_after is not None
    assert 59 < new.start_after - time.time() <= 60


def test_the_outbox_knows_whether_its_table_is_there(database: Database) -> None:
    connect, dialect = database
    outbox = Outbox(connect, dialect)
    assert outbox.has_table()
    with contextlib.closing(connect()) as connection:
        connection.cursor().execute(f"DROP TABLE {TABLE}")
        connection.commit()
    assert not outbox.has_table()
    outbox.create()
    assert outbox.has_table()


def test_the_cli_lists_and_redrives_dead_rows(tmp_path: Path) -> None:
    path = tmp_path / "albums.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        create_table(connection, Dialect.SQLITE)
        enqueue(connection, Dialect.SQLITE, "5", ["albums/5/a.jpg"])
        connection.execute(f"UPDATE {TABLE} SET state = 'rejected', last_error = 'conflict: stale'")  # noqa: S608  (0.1.0's name)
        connection.commit()
        create_table(connection, Dialect.SQLITE)  # the upgrade renames 0.1.0's 'rejected'
        connection.commit()

    def outbox_cli(*args: str) -> str:
        command = [
            sys.executable,
            "-m",
            "filecleanup.album.cli",
            "outbox",
            *args,
            "--database",
            f"sqlite:///{path}",
        ]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout

    listed = outbox_cli("list")
    assert "conflict: stale" in listed and " dead " in listed
    assert outbox_cli("redrive", "--all").strip() == "redriven: 1 dead row pending again"
    assert "albums" not in outbox_cli("list") and " 5 " in outbox_cli("list", "--state", "pending")
