"""Fixtures every suite that needs a control plane shares: a real kube-apiserver + etcd on loopback (or
inside the e2e sandbox's network namespace), one per test session, and the helm binary."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from tests.kube import Kube
from tools.devkit.storages import MotoProcess
from tools.envtest.controlplane import ControlPlane, obtain_binaries

OBTAIN_SCRIPT = Path(__file__).parents[1] / "tools" / "envtest" / "obtain.sh"
CRD_FILE = Path(__file__).parents[1] / "crds" / "filecleanup.dev_filecleanups.yaml"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane | None]:
    """A private control plane, or None when FILECLEANUP_TEST_KUBECONFIG names a cluster to use.

    A plain KUBECONFIG is deliberately not used: it often points at a real cluster.
    """
    if os.environ.get("FILECLEANUP_TEST_KUBECONFIG"):
        yield None
        return
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start(obtain_binaries())
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane | None) -> Path:
    return control_plane.kubeconfig if control_plane else Path(os.environ["FILECLEANUP_TEST_KUBECONFIG"])


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


@pytest.fixture(scope="session")
def crd(kube: Kube) -> None:
    kube.apply_crd(yaml.safe_load(CRD_FILE.read_text()))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    """moto's S3 server, one per test module: each module's buckets start empty."""
    server = MotoProcess(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()
