"""The node suite: `helm install` on a single-node cluster (tools/node) whose controller-manager makes
the Deployment's pod and whose kubelet runs it from the image, with its probes, projected
ServiceAccount token, downward API, runAsNonRoot check and grace periods.

It runs inside the node's network namespace (`make e2e`, through `tools/node/node.sh run`); the
storages listen on the node's address, which the pods reach through the pod network's gateway.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.commands import Cli
from tests.e2e.conftest import RELEASE, RELEASE_NAMESPACE, VOLUME_CLAIM, Storages, install, rendered
from tests.kube import Kube
from tools.envtest.polling import eventually

NODE_NAME = "filecleanup-node"
ROLLOUT_TIMEOUT = "180s"


@pytest.fixture(scope="session")
def node_ip() -> str:
    address = os.environ.get("FILECLEANUP_NODE_IP")
    if not address:
        pytest.exit("the node suite runs inside the node's network namespace: run `make e2e`", returncode=2)
    return address


@dataclass
class Release:
    cli: Cli
    deployment: str
    workdir: Path

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.cli.kubectl("-n", RELEASE_NAMESPACE, *args, check=check).stdout

    def pods(self) -> list[dict[str, Any]]:
        """The operator's pods that are not on their way out, oldest first."""
        selector = "app.kubernetes.io/name=filecleanup-operator,app.kubernetes.io/instance=" + RELEASE
        listed = json.loads(self.kubectl("get", "pods", "-l", selector, "-o", "json"))["items"]
        alive = [pod for pod in listed if not pod["metadata"].get("deletionTimestamp")]
        return sorted(alive, key=lambda pod: pod["metadata"]["creationTimestamp"])

    def wait_available(self) -> None:
        self.kubectl("rollout", "status", f"deployment/{self.deployment}", f"--timeout={ROLLOUT_TIMEOUT}")

    def upgrade(self, *args: str) -> None:
        self.cli.helm(
            "upgrade",
            RELEASE,
            str(Path(__file__).parents[3] / "charts" / "filecleanup-operator"),
            "-n",
            RELEASE_NAMESPACE,
            "-f",
            str(self.workdir / "values.yaml"),
            *args,
        )
        self.wait_available()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0, interval: float = 0.5) -> Any:
    """``eventually`` with a kubelet's pace: pods take seconds, not tenths."""
    return eventually(what, probe, timeout=timeout, interval=interval)


@pytest.fixture(scope="session")
def release(  # noqa: PLR0917  (session fixtures)
    cli: Cli,
    kube: Kube,
    storages: Storages,
    image: str,
    node_ip: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """The chart installed with its defaults, but for the image and the storages; the filesystem
    storage's claim is bound to a directory of this machine (a hostPath volume, as a local PV)."""
    workdir = tmp_path_factory.mktemp("release")
    install(cli, storages, image, workdir)
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": VOLUME_CLAIM},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "hostPath": {"path": str(storages.volume.root), "type": "Directory"},
                "claimRef": {"namespace": RELEASE_NAMESPACE, "name": VOLUME_CLAIM},
            },
        }
    )
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": VOLUME_CLAIM},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": VOLUME_CLAIM,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace=RELEASE_NAMESPACE,
    )
    deployment = next(doc for doc in rendered(cli, "manifest") if doc["kind"] == "Deployment")
    installed = Release(cli, deployment["metadata"]["name"], workdir)
    installed.wait_available()
    yield installed
    cli.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, check=False)
