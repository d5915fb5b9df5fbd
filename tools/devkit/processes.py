"""The operator as a real process, so that tests and the demo can stop, kill and restart it; and the
helpers that start and stop local servers."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import yaml

from tools.envtest.controlplane import free_port
from tools.envtest.polling import eventually

STARTUP_TIMEOUT = 30.0
PORT_ATTEMPTS = 3


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(url, timeout=1).status_code == HTTPStatus.OK
        except httpx.TransportError:
            return False

    try:
        eventually(f"{url} to be healthy", healthy, timeout=STARTUP_TIMEOUT)
    except TimeoutError as error:
        raise RuntimeError(f"{error}:\n{log.read_text()[-3000:]}") from error


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class OperatorProcess:
    """``python -m filecleanup`` watching ``namespaces``, with its log in a file."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        config: dict[str, Any],
        namespaces: list[str],
        env: dict[str, str] | None = None,
        *,
        report_key: bool = True,
    ) -> None:
        """``env`` adds to the environment (the benchmarks' baseline runs another version's code);
        ``report_key`` gives the operator a report key of its own unless the configuration names one
        (an older version, which knows no reportKeyFile, runs without)."""
        self.workdir = workdir
        self.extra_env = env or {}
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.config_path = workdir / "operator-config.yaml"
        if report_key and "reportKeyFile" not in config:  # as the chart does: a key of its own, in a file
            key_file = workdir / "report-key"
            key_file.write_text(secrets.token_hex(32))
            config = {**config, "reportKeyFile": str(key_file)}
        self.config_path.write_text(yaml.safe_dump(config))
        self.log = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_url = ""

    def start(self, *extra_args: str, wait_ready: bool = True, detached: bool = False) -> None:
        """Start the operator; wait until it works (``/readyz``), or only until it answers
        (``/healthz``: a standby replica never becomes ready while another works). A free port can be
        taken by another process before the operator binds it: it is then started again on others.
        ``detached``: in a session of its own, to outlive whoever started it (``make dev``)."""
        for attempt in range(PORT_ATTEMPTS):
            logged = self.log.stat().st_size if self.log.exists() else 0
            try:
                self._start(extra_args, wait_ready=wait_ready, detached=detached)
            except RuntimeError:
                with self.log.open("rb") as log:
                    log.seek(logged)
                    lost_port = b"address already in use" in log.read()
                if not lost_port or attempt == PORT_ATTEMPTS - 1:
                    raise
            else:
                return

    def _start(self, extra_args: tuple[str, ...], *, wait_ready: bool, detached: bool) -> None:
        port, metrics_port = free_port(), free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        namespace_args = [arg for namespace in self.namespaces for arg in ("--namespace", namespace)]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "filecleanup",
                    "--config",
                    str(self.config_path),
                    "--liveness",
                    f"127.0.0.1:{port}",
                    "--metrics",
                    f"127.0.0.1:{metrics_port}",
                    *namespace_args,
                    *extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=detached,
            )
        probe = "readyz" if wait_ready else "healthz"
        wait_until_healthy(f"http://127.0.0.1:{port}/{probe}", self.process, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)

    def log_text(self) -> str:
        return self.log.read_text()
