"""The example album service end to end: DELETE answers 202 at once, the files go shortly after."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cleanups import album_keys, wait_for_phase
from tests.kube import Kube
from tools.devkit.examples import ALBUM_SERVICE_DIR, album_service
from tools.devkit.processes import stop_process, wait_until_healthy
from tools.devkit.storages import StorageProcess
from tools.envtest.controlplane import free_port


def test_deleting_an_album_answers_at_once_and_its_files_follow(
    kube: Kube, kubeconfig: Path, namespace: str, storage: StorageProcess, tmp_path: Path
) -> None:
    keys = album_keys(f"{namespace}/42", 40)
    other = album_keys(f"{namespace}/7", 5)
    storage.seed([*keys, *other])
    database = tmp_path / "albums.db"
    album_service.init_db(database, {"42": keys, "7": other})
    port = free_port()
    log = tmp_path / "album-service.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "ALBUM_DB": str(database),
        "FILECLEANUP_NAMESPACE": namespace,
    }
    with log.open("ab") as output:
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "album_service:app",
                "--app-dir",
                str(ALBUM_SERVICE_DIR),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=output,
            stderr=output,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/albums/7/cleanup", service, log)
        started = time.monotonic()
        reply = httpx.delete(f"http://127.0.0.1:{port}/albums/42", timeout=10)
        answered_in = time.monotonic() - started
        assert reply.status_code == 202
        assert reply.json() == {"album": "42", "files": 40, "cleanup": "queued"}
        assert answered_in < 1.0
        with contextlib.closing(sqlite3.connect(database)) as connection:
            assert connection.execute("SELECT count(*) FROM photos WHERE album_id = '42'").fetchone() == (0,)
            assert connection.execute("SELECT count(*) FROM albums WHERE id = '42'").fetchone() == (0,)

        wait_for_phase(kube, namespace, "album-42", "Succeeded", timeout=60)
        assert not any(storage.exists(key) for key in keys)
        assert all(storage.exists(key) for key in other)
        progress = httpx.get(f"http://127.0.0.1:{port}/albums/42/cleanup", timeout=10).json()
        assert progress == {"album": "42", "phase": "Succeeded", "total": 40, "deleted": 40}
        assert httpx.delete(f"http://127.0.0.1:{port}/albums/42", timeout=10).status_code == 404
        with contextlib.closing(sqlite3.connect(database)) as connection:
            assert connection.execute("SELECT state FROM filecleanup_outbox").fetchall() == [("delivered",)]
    finally:
        stop_process(service)
