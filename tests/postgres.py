"""A private PostgreSQL server on loopback for outbox tests: initdb in a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tools.devkit.processes import stop_process
from tools.envtest.controlplane import free_port

STARTUP_TIMEOUT = 30.0


def postgres_bin(name: str) -> str:
    packaged = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    found = shutil.which(name) or (str(packaged[-1]) if packaged else None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found


class PostgresServer:
    def __init__(self) -> None:
        # Its own directory under /tmp: a pytest tmp_path is private to root, and the server may not be.
        self.workdir = Path(tempfile.mkdtemp(prefix="filecleanup-postgres-"))
        self.data = self.workdir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.log = self.workdir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root; as root, run it as the package's postgres user.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        if self.prefix:
            shutil.chown(self.workdir, "postgres", "postgres")
        subprocess.run(
            [
                *self.prefix,
                postgres_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.prefix,
                    postgres_bin("postgres"),
                    *("-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port)),
                    *("-k", str(self.workdir), "-c", "fsync=off"),
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._accepts_connections():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def _accepts_connections(self) -> bool:
        try:
            psycopg.connect(self.url, connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)
