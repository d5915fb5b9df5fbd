"""Integration fixtures: a real kube-apiserver + etcd on loopback, one per test session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.aio import config as aio_config

from controlplane import ControlPlane, obtain_binaries
from filecleanup.client import FileCleanupClient
from filecleanup.testing.processes import OperatorProcess
from filecleanup.testing.storages import StorageProcess
from tests.kube import Kube

MAX_CONCURRENT_REQUESTS = 4

OBTAIN_SCRIPT = Path(__file__).parents[2] / "tools" / "envtest" / "obtain.sh"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here needs real servers: `pytest -m "not integration"` runs the unit tests alone."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private control plane, or the cluster in FILECLEANUP_TEST_KUBECONFIG when that is set.

    A plain KUBECONFIG is deliberately not used: it often points at a real cluster.
    """
    given = os.environ.get("FILECLEANUP_TEST_KUBECONFIG")
    if given:
        yield Path(given)
        return
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start(obtain_binaries())
    try:
        yield plane.kubeconfig
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary, built once and cached by obtain.sh (as `make helm` does)."""
    output = subprocess.run(
        [str(OBTAIN_SCRIPT), "helm"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(output.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kube(api_client: client.ApiClient) -> Kube:
    return Kube(api_client)


CRD_FILE = Path(__file__).parents[2] / "crds" / "filecleanup.dev_filecleanups.yaml"


@pytest.fixture(scope="session")
def crd(kube: Kube) -> None:
    kube.apply_crd(yaml.safe_load(CRD_FILE.read_text()))


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
            }
        },
    }


@pytest.fixture(scope="session")
def operator(
    crd: None, kubeconfig: Path, storage_process: StorageProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the suite, watching the namespaces named ``it-*``."""
    process = OperatorProcess(
        tmp_path_factory.mktemp("operator"), kubeconfig, operator_config(storage_process), ["it-*"]
    )
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
