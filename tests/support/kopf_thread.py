"""The operator in the test process: the command line's own run (``filecleanup.__main__.run``, with
arguments parsed by its parser) on an event loop in a background thread, so that a test reads its
Runtime (the memo every handler gets) while the handlers work against a real API server.

Kopf's own runner, ``kopf.testing.KopfRunner``, runs ``kopf run``: that command gives the handlers
Kopf's default memo, not this operator's Runtime, and none of the command line's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import kopf
from kubernetes.config import kube_config

import filecleanup.__main__ as command_line
import filecleanup.controller.handlers  # noqa: F401  (registers the handlers, as main() does)
from filecleanup.api.config import load_config
from filecleanup.controller.leader import LeaseTiming
from filecleanup.controller.runtime import Runtime
from tools.envtest.controlplane import free_port
from tools.envtest.polling import eventually

STARTUP_TIMEOUT = 30.0
# Stopped, Kopf ends its watchers and handlers, then runs the cleanup handler (handlers.stop).
STOP_TIMEOUT = 30.0


class OperatorThread:
    """``filecleanup-operator ARGS`` in a thread: ``start()`` returns once it works (its ``/readyz``
    answers 200); ``stop()`` stops it as SIGTERM stops the process, waits for run() to return, and
    raises what it raised. ``stop()`` also fails if the run left a task, a thread, its probe server or
    an open client behind.

    The liveness server is the readiness signal, on a free loopback port; the metrics server stays
    off (a test reads ``runtime.metrics`` directly). ``KUBECONFIG`` names ``kubeconfig`` while it
    runs: Kopf's login and the operator's own client both find the cluster as they do outside a pod.
    """

    def __init__(self, kubeconfig: Path, config: Path, args: Sequence[str]) -> None:
        self.port = free_port()
        self.args = command_line.parse_args(
            ["--config", str(config), "--liveness", f"127.0.0.1:{self.port}", "--metrics", "off", *args]
        )
        self.config = load_config(self.args.config)
        self.timing = LeaseTiming(self.args.lease_duration, self.args.renew_deadline, self.args.retry_period)
        self.kubeconfig = kubeconfig
        self.error: BaseException | None = None
        self.leftover_tasks: list[str] = []
        self._handed: list[dict[str, Any]] = []  # what the command line handed kopf.operator
        self._kopf_operator = kopf.operator
        # Kopf's settings, made here rather than by Kopf: the run's thread pool is then ours to stop.
        self.settings = kopf.OperatorSettings()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[int] | None = None
        self._stop_flag: asyncio.Event | None = None
        self._stopping = False
        self._scope = contextlib.ExitStack()
        self._threads_before: set[threading.Thread] = set()
        self._thread: threading.Thread | None = None

    @property
    def runtime(self) -> Runtime:
        """The memo the command line built and handed Kopf (``memo`` in every handler)."""
        if len(self._handed) != 1:
            raise RuntimeError(f"kopf.operator was called {len(self._handed)} times; once was expected")
        memo = self._handed[0]["memo"]
        assert isinstance(memo, Runtime)
        return memo

    async def _operator(self, **kwargs: Any) -> None:
        """kopf.operator, as the command line calls it; it records what it is given, and adds a stop
        flag: in a thread, Kopf does not listen to signals, and the flag is how its signal handler
        stops it (stop_flag_checker ends, then the root tasks, then the cleanup handler runs)."""
        if "settings" in kwargs or "stop_flag" in kwargs:
            raise RuntimeError("the command line now gives Kopf its settings or a stop flag: use those")
        self._handed.append(kwargs)
        self._stop_flag = asyncio.Event()
        await self._kopf_operator(**kwargs, settings=self.settings, stop_flag=self._stop_flag)

    def start(self) -> Runtime:
        self._threads_before = set(threading.enumerate())
        self._scope.enter_context(mock.patch.dict(os.environ, {"KUBECONFIG": str(self.kubeconfig)}))
        # The client library reads KUBECONFIG once, at its import; Kopf's login uses that default.
        self._scope.enter_context(
            mock.patch.object(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(self.kubeconfig))
        )
        # run() builds the Runtime and hands it to kopf.operator: record it there.
        self._scope.enter_context(mock.patch.object(kopf, "operator", self._operator))
        # Made here, run in the thread: stop() can reach it whenever it is called.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(self._loop,), name="filecleanup-operator", daemon=True
        )
        self._thread.start()
        try:
            eventually("the in-process operator to be ready", self._ready, timeout=STARTUP_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self.runtime

    def _ready(self) -> bool:
        assert self._thread is not None
        if not self._thread.is_alive():
            raise RuntimeError(f"the operator stopped while starting: {self.error!r}") from self.error
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == httpx.codes.OK
        except httpx.TransportError:
            return False

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            task = loop.create_task(
                command_line.run(self.args, self.config, self.timing), name="filecleanup-operator"
            )
            self._task = task
            try:
                code = loop.run_until_complete(task)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
            else:
                if not self._stopping or code != 0:
                    self.error = RuntimeError(f"the operator stopped with exit code {code}")
            # Kopf's stop cancels every task it did not find at its start: nothing should be left.
            leftovers = [pending for pending in asyncio.all_tasks(loop) if not pending.done()]
            self.leftover_tasks = [repr(task) for task in leftovers]
            for leftover in leftovers:
                leftover.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException as error:  # noqa: BLE001  (stop() raises it in the test's thread)
            self.error = self.error or error
        finally:
            asyncio.set_event_loop(None)
            # Closed, the loop runs none of its timers: among them Kopf's last-resort SIGKILL, which
            # it arms when it is cancelled without its stop flag raised.
            loop.close()

    def _stop_on_loop(self) -> None:
        """Raise Kopf's stop flag, as SIGTERM does in a process; if Kopf has not been called yet, cancel
        the run. On the loop, which runs only once the thread made the task."""
        if self._stop_flag is not None:
            self._stop_flag.set()
        elif self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        """Stop the run and wait for it; raise what it raised, or name what it left behind."""
        self._stopping = True
        try:
            if self._loop is None or self._thread is None:
                return  # never started
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the run ended already
                self._loop.call_soon_threadsafe(self._stop_on_loop)
            self._thread.join(STOP_TIMEOUT)
        finally:
            self._scope.close()
        if self._thread.is_alive():
            raise RuntimeError(f"the operator did not stop within {STOP_TIMEOUT:.0f} s")
        # Kopf runs its synchronous handlers (its own login handler) in a pool that it never shuts
        # down: a process's exit ends it. Here the test's process goes on.
        self.settings.execution.executor.shutdown(wait=True)
        if self.error is not None:
            raise self.error
        left = [thread.name for thread in threading.enumerate() if thread not in self._threads_before]
        problems = [
            *(f"task {task}" for task in self.leftover_tasks),
            *(f"thread {name}" for name in left),
            *(["the probe server still listens"] if _listening(self.port) else []),
            *self._not_cleaned_up(),
        ]
        if problems:
            raise RuntimeError("the operator's run left behind: " + "; ".join(problems))

    def _not_cleaned_up(self) -> list[str]:
        """What the cleanup handler (handlers.stop) should have closed, if the startup handler ran."""
        opened = self.runtime.opened if self._handed else None
        if opened is None:
            return []
        session = opened.api.rest_client.pool_manager
        return [
            *([] if opened.sweeper.done() else ["the sweeper task"]),
            *([] if opened.pause_reader.done() else ["the pause-file reader task"]),
            *([] if session is None or session.closed else ["an open Kubernetes API client"]),
        ]

    def __enter__(self) -> OperatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
