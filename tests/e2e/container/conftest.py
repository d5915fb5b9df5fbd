"""The container suite: the chart installed on a real control plane, and its operator pod run from the
image with `docker run`, exactly as the rendered Deployment says (pods.py).

Everything runs inside the private network namespace that tools/e2e/sandbox.sh holds: the control
plane, the storages, the operator container and this test process. There is no controller-manager:
this suite plays the endpoint controller for the Service (see ``release``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.commands import Cli
from tests.e2e.conftest import (
    RELEASE_NAMESPACE,
    SECRETS,
    VOLUME_CLAIM,
    Manifest,
    Storages,
    install,
    rendered,
    secret_data,
)
from tests.e2e.container.pods import Cluster, Pod, RunningPod
from tests.kube import Kube
from tools.envtest.controlplane import ControlPlane

# The sandbox's own address besides loopback (tools/e2e/sandbox.sh): the API server refuses to proxy to
# loopback endpoints, and `helm test` reaches the operator through the API server's service proxy.
POD_IP = "10.250.0.1"


@pytest.fixture(scope="session")
def sandbox() -> str:
    name = os.environ.get("FILECLEANUP_SANDBOX")
    if not name:
        pytest.exit(
            "the container suite runs inside the sandbox network namespace: run `make e2e`", returncode=2
        )
    return name


@dataclass
class Release:
    """The installed chart, as rendered, and what its pods get from the cluster."""

    documents: list[Manifest]
    hooks: list[Manifest]
    cluster: Cluster
    files: Path
    network: str
    image: str

    def find(self, kind: str) -> Manifest:
        return next(doc for doc in self.documents if doc["kind"] == kind)

    def pod(self, name: str, spec: Manifest | None = None) -> Pod:
        spec = spec or self.find("Deployment")["spec"]["template"]["spec"]
        return Pod(name, spec, self.cluster, self.files, self.network, self.image)


_pod_numbers = itertools.count()


def pod_name(release: Release) -> str:
    """A fresh name per run, as a ReplicaSet gives each pod it makes."""
    return f"{release.find('Deployment')['metadata']['name']}-e2e-{next(_pod_numbers)}"


@pytest.fixture(scope="session")
def release(  # noqa: PLR0917  (session fixtures)
    cli: Cli,
    kube: Kube,
    control_plane: ControlPlane | None,
    storages: Storages,
    sandbox: str,
    image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    if control_plane is None:
        pytest.exit("the container suite needs its own control plane in the sandbox", returncode=2)
    files = tmp_path_factory.mktemp("pod-files")
    install(cli, storages, image, files)
    documents, hooks = rendered(cli, "manifest"), rendered(cli, "hooks")
    account = next(doc for doc in documents if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    for hook in hooks:  # what `helm test` creates before its pod: the check's account and its Role
        if hook["kind"] != "Pod":
            kube.create(hook, namespace=RELEASE_NAMESPACE)
    state = control_plane.load_state()
    assert state is not None
    cluster = Cluster(
        api_host="127.0.0.1",
        api_port=state.api_port,
        ca_certificate=control_plane.pki / "ca.crt",
        namespace=RELEASE_NAMESPACE,
        tokens={
            name: cli.kubectl(
                "create", "token", name, "-n", RELEASE_NAMESPACE, "--duration=2h"
            ).stdout.strip()
            for name in (
                account,
                *(doc["metadata"]["name"] for doc in hooks if doc["kind"] == "ServiceAccount"),
            )
        },
        config_maps={doc["metadata"]["name"]: doc["data"] for doc in documents if doc["kind"] == "ConfigMap"},
        secrets={
            name: secret_data(cli, name)
            for name in (*SECRETS, *(doc["metadata"]["name"] for doc in documents if doc["kind"] == "Secret"))
        },
        claims={VOLUME_CLAIM: storages.volume.root},
        pod_ip=POD_IP,
    )
    yield Release(documents, hooks, cluster, files, f"container:{sandbox}", image)
    cli.helm("uninstall", "filecleanup", "-n", RELEASE_NAMESPACE, check=False)


def publish(kube: Kube, release: Release, pod: Pod) -> None:
    """What the kubelet and the endpoint controller would tell the API server about a running pod: the
    Pod with its address, and the Service's endpoint. The API server's service proxy (which `helm
    test` uses) only leads to an address that a Pod of the Service holds."""
    template = release.find("Deployment")["spec"]["template"]
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "labels": template["metadata"]["labels"]},
            "spec": {**pod.spec, "nodeName": "sandbox"},
        },
        namespace=RELEASE_NAMESPACE,
    )
    kube.patch_status(
        "v1",
        "Pod",
        pod.name,
        {"status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}},
        namespace=RELEASE_NAMESPACE,
    )
    service = release.find("Service")
    kube.create(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": pod.name,
                "labels": {"kubernetes.io/service-name": service["metadata"]["name"]},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [POD_IP],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": pod.name, "namespace": RELEASE_NAMESPACE},
                }
            ],
            "ports": [
                {"name": port["name"], "port": port["port"], "protocol": "TCP"}
                for port in service["spec"]["ports"]
            ],
        },
        namespace=RELEASE_NAMESPACE,
    )


def unpublish(kube: Kube, pod: Pod) -> None:
    kube.delete("discovery.k8s.io/v1", "EndpointSlice", pod.name, namespace=RELEASE_NAMESPACE)
    kube.delete("v1", "Pod", pod.name, namespace=RELEASE_NAMESPACE)


@pytest.fixture
def operator_pod(release: Release, kube: Kube) -> Iterator[RunningPod]:
    """The Deployment's pod, running and healthy, and known to the API server."""
    pod = RunningPod(release.pod(pod_name(release)))
    try:
        pod.wait_healthy()
        publish(kube, release, pod.pod)
        yield pod
    finally:
        pod.remove()
        unpublish(kube, pod.pod)
