"""Layer controller. What the operator's handlers share, as Kopf's memo: the validated configuration and the
metrics from the command line, and the clients the startup handler opens (and the cleanup handler closes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kubernetes.aio import client

from filecleanup.api.config import OperatorConfig
from filecleanup.api.metrics import Metrics
from filecleanup.controller.pause import PauseSwitch
from filecleanup.run.reconciler import Reconciler
from filecleanup.storage import Storage


@dataclass
class Clients:
    api: client.ApiClient
    storages: dict[str, Storage]
    reconciler: Reconciler
    sweeper: asyncio.Task[None]
    pause_reader: asyncio.Task[None]


@dataclass
class Runtime:
    config: OperatorConfig
    metrics: Metrics
    watches_namespace_globs: bool
    shutdown_seconds: float
    controller_name: str
    namespaces: list[str]  # names or globs; empty: every namespace
    identity: str  # this replica, as its Lease and its events name it
    pause: PauseSwitch
    pause_poll_seconds: float
    opened: Clients | None = None

    @property
    def clients(self) -> Clients:
        if self.opened is None:
            raise RuntimeError("the operator's clients are used before the startup handler opened them")
        return self.opened
