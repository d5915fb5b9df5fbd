"""Integration fixtures: the reference storage server and one operator process for the suite (the
control plane comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import config as aio_config

from filecleanup.album.client import FileCleanupClient
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess

MAX_CONCURRENT_REQUESTS = 4


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here needs real servers: `pytest -m "not integration"` runs the unit tests alone."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def storage_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageProcess]:
    storage = StorageProcess(tmp_path_factory.mktemp("storage"))
    storage.start()
    try:
        yield storage
    finally:
        storage.stop()


@pytest.fixture
def storage(storage_process: StorageProcess) -> StorageProcess:
    """The shared storage server, with faults and counters reset for this test."""
    if storage_process.process is None or storage_process.process.poll() is not None:
        storage_process.start()
    storage_process.reset()
    return storage_process


def operator_config(storage: StorageProcess) -> dict[str, Any]:
    return {
        "defaultStorage": "photos",
        "storages": {
            "photos": {
                **storage.operator_storage(),
                "connectTimeoutSeconds": 0.5,
                "readTimeoutSeconds": 1,
                "maxConcurrentRequests": MAX_CONCURRENT_REQUESTS,
                # A throttle asking for a longer wait than this is an outage (tests see both paths).
                "adaptiveConcurrency": {"unavailableAfterSeconds": 2},
            }
        },
    }


@pytest.fixture(scope="session")
def operator(
    crd: None, kubeconfig: Path, storage_process: StorageProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the suite, watching the namespaces named ``it-*``."""
    yield from running_operator(
        tmp_path_factory.mktemp("operator"), kubeconfig, operator_config(storage_process), ["it-*"]
    )


def running_operator(
    workdir: Path, kubeconfig: Path, config: dict[str, Any], namespaces: list[str]
) -> Iterator[OperatorProcess]:
    """An operator process for a fixture to yield: started, and stopped when the fixture ends."""
    process = OperatorProcess(workdir, kubeconfig, config, namespaces)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def namespace(kube: Kube, operator: OperatorProcess) -> str:
    """A fresh namespace that the shared operator watches."""
    return kube.create_namespace("it")


@pytest.fixture
async def cleanup_client(kubeconfig: Path) -> AsyncIterator[FileCleanupClient]:
    api = await aio_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    async with FileCleanupClient(api) as client:
        yield client
