"""Integration fixtures: a real kube-apiserver + etcd on loopback, one per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from controlplane import ControlPlane, obtain_binaries
from tests.kube import Kube

pytestmark = pytest.mark.integration


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
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kube(api_client: client.ApiClient) -> Kube:
    return Kube(api_client)
