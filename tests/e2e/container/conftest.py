"""End-to-end fixtures: the chart installed on a real control plane, and its operator pod run from the
image exactly as the rendered Deployment says (tests/e2e/pods.py).

Everything runs inside the private network namespace that tools/e2e/sandbox.sh holds (`make e2e`): the
control plane, the storages, the operator container and this test process, all on that namespace's
loopback.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.commands import Cli
from tests.e2e.pods import Cluster, Manifest, Pod, RunningPod

from controlplane import ControlPlane
from filecleanup.testing.storages import Directory, MotoProcess, StorageProcess

CHART = Path(__file__).parents[2] / "charts" / "filecleanup-operator"
RELEASE = "filecleanup"
RELEASE_NAMESPACE = "filecleanup-system"
DEFAULT_IMAGE = "filecleanup/filecleanup-operator:dev"


@pytest.fixture(scope="session")
def sandbox() -> str:
    name = os.environ.get("FILECLEANUP_SANDBOX")
    if not name:
        pytest.exit("the e2e suite runs inside the sandbox network namespace: run `make e2e`", returncode=2)
    return name


@pytest.fixture(scope="session")
def image() -> str:
    name = os.environ.get("FILECLEANUP_IMAGE", DEFAULT_IMAGE)
    found = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    if found.returncode != 0:
        pytest.exit(
            f"image {name} not found: run `make image` (or `make e2e`, which builds it)", returncode=2
        )
    return name


@pytest.fixture(scope="session")
def cli(helm: Path, kubeconfig: Path) -> Cli:
    return Cli(helm, kubeconfig)


@dataclass
class Storages:
    http: StorageProcess
    s3: MotoProcess
    volume: Directory
    token: str


@pytest.fixture(scope="session")
def storages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storages]:
    workdir = tmp_path_factory.mktemp("storages")
    token = "e2e-bearer-token-5c2a"  # the HTTP storage demands it; the pod reads it from a Secret
    (workdir / "token").write_text(token)
    http = StorageProcess(workdir, token_file=workdir / "token")
    s3 = MotoProcess(workdir)
    http.start()
    s3.start()
    try:
        yield Storages(http, s3, Directory(workdir / "volume"), token)
    finally:
        http.stop()
        s3.stop()


@dataclass
class Release:
    """The installed chart, as rendered, and what its pods get from the cluster."""

    documents: list[Manifest]
    hooks: list[Manifest]
    cluster: Cluster
    files: Path
    network: str
    image: str

    def find(self, kind: str, documents: list[Manifest] | None = None) -> Manifest:
        return next(doc for doc in documents or self.documents if doc["kind"] == kind)

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
    control_plane: ControlPlane | None,
    storages: Storages,
    sandbox: str,
    image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """`helm install` with the chart's defaults, changed only where this cluster differs: the image,
    the storages' addresses, and two more storages (S3 and a volume) so that every backend runs."""
    if control_plane is None:
        pytest.exit("the e2e suite needs its own control plane in the sandbox", returncode=2)
    files = tmp_path_factory.mktemp("pod-files")
    cli.kubectl("create", "namespace", RELEASE_NAMESPACE)
    (files / "token").write_text(storages.token)
    cli.kubectl(
        "create",
        "secret",
        "generic",
        "photos-storage-token",
        "-n",
        RELEASE_NAMESPACE,
        f"--from-file=token={files / 'token'}",
    )
    cli.kubectl(
        "create",
        "secret",
        "generic",
        "archive-aws",
        "-n",
        RELEASE_NAMESPACE,
        f"--from-file=credentials={storages.s3.credentials_file}",
    )
    repository, _, tag = image.rpartition(":")
    s3 = storages.s3.operator_storage()
    policy = {"allowedNamespaces": "*", "keyPrefix": "{namespace}/"}
    values = {
        "image": {"repository": repository, "tag": tag},
        "config": {
            "storages": {
                "photos": {
                    "url": storages.http.url,
                    "tokenSecret": {"name": "photos-storage-token", "key": "token"},
                },
                "archive": {
                    "type": "s3",
                    **{key: s3[key] for key in ("bucket", "region", "endpoint")},
                    "credentialsSecret": {"name": "archive-aws", "key": "credentials"},
                    "policy": policy,
                },
                "shared": {
                    "type": "filesystem",
                    "root": "/data/photos",
                    "pruneEmptyDirs": True,
                    "volume": {"persistentVolumeClaim": {"claimName": "photos-volume"}},
                    "policy": policy,
                },
            }
        },
    }
    (files / "values.yaml").write_text(yaml.safe_dump(values))
    cli.helm("install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "-f", str(files / "values.yaml"))
    documents = [
        doc
        for doc in yaml.safe_load_all(cli.helm("get", "manifest", RELEASE, "-n", RELEASE_NAMESPACE).stdout)
        if doc
    ]
    hooks = [
        doc
        for doc in yaml.safe_load_all(cli.helm("get", "hooks", RELEASE, "-n", RELEASE_NAMESPACE).stdout)
        if doc
    ]
    account = next(doc for doc in documents if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    token = cli.kubectl("create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=2h").stdout.strip()
    config_map = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    service = next(doc for doc in documents if doc["kind"] == "Service")["metadata"]["name"]
    state = control_plane.load_state()
    assert state is not None
    cluster = Cluster(
        api_host="127.0.0.1",
        api_port=state.api_port,
        ca_certificate=control_plane.pki / "ca.crt",
        namespace=RELEASE_NAMESPACE,
        service_account_token=token,
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
        secrets={name: secret_data(cli, name) for name in ("photos-storage-token", "archive-aws")},
        claims={"photos-volume": storages.volume.root},
        # No CoreDNS and no kube-proxy: the Service's names lead to the sandbox, where the pod listens.
        hosts=dict.fromkeys(
            (service, f"{service}.{RELEASE_NAMESPACE}", f"{service}.{RELEASE_NAMESPACE}.svc"), "127.0.0.1"
        ),
    )
    yield Release(documents, hooks, cluster, files, f"container:{sandbox}", image)
    cli.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, check=False)


def secret_data(cli: Cli, name: str) -> dict[str, bytes]:
    secret: dict[str, Any] = json.loads(
        cli.kubectl("get", "secret", name, "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    )
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


@pytest.fixture
def operator_pod(release: Release) -> Iterator[RunningPod]:
    """The Deployment's pod, running and healthy."""
    pod = RunningPod(release.pod(pod_name(release)))
    try:
        pod.wait_healthy()
        yield pod
    finally:
        pod.remove()
