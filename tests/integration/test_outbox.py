"""The transactional outbox through an API-server outage, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from kubernetes import config as sync_config
from kubernetes.aio import config as aio_config

from controlplane import ControlPlane, obtain_binaries
from filecleanup.client import ALBUM_LABEL, FileCleanupClient
from filecleanup.outbox import TABLE, Connection, Dialect, Relay, State, create_table, enqueue
from tests.conftest import CRD_FILE
from tests.kube import Kube
from tests.postgres import PostgresServer

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

    objects = await client.list(namespace=namespace)
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
    assert await Relay(connect, dialect, client).run_once() == 0
    assert states(connect) == [(State.REJECTED, 1)]
