"""Fixtures both end-to-end suites share: the image under test, the three storages, and `helm install`
of the chart with its defaults, changed only where the test cluster differs (the image and the
storages' addresses), plus an S3 and a filesystem storage so that every backend runs."""

from __future__ import annotations

import base64
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
from tools.devkit.storages import Directory, MotoProcess, StorageProcess

CHART = Path(__file__).parents[2] / "charts" / "filecleanup-operator"
RELEASE = "filecleanup"
RELEASE_NAMESPACE = "filecleanup-system"
DEFAULT_IMAGE = "filecleanup/filecleanup-operator:dev"
VOLUME_CLAIM = "photos-volume"
SECRETS = ("photos-storage-token", "archive-aws")

Manifest = dict[str, Any]


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
    """On the address the pods reach: the node's, or the sandbox's loopback."""
    host = os.environ.get("FILECLEANUP_NODE_IP", "127.0.0.1")
    workdir = tmp_path_factory.mktemp("storages")
    token = "e2e-bearer-token-5c2a"  # the HTTP storage demands it; the pod reads it from a Secret
    (workdir / "token").write_text(token)
    http = StorageProcess(workdir, token_file=workdir / "token", host=host)
    s3 = MotoProcess(workdir, host=host)
    http.start()
    s3.start()
    try:
        yield Storages(http, s3, Directory(workdir / "volume"), token)
    finally:
        http.stop()
        s3.stop()


def chart_values(storages: Storages, image: str) -> Manifest:
    repository, _, tag = image.rpartition(":")
    s3 = storages.s3.operator_storage()
    policy = {"allowedNamespaces": "*", "keyPrefix": "{namespace}/"}
    return {
        "image": {"repository": repository, "tag": tag},
        "config": {
            # Every finished object's receipt goes to the S3 bucket, signed with the key the chart makes.
            "receipts": {"storage": "archive", "prefix": "filecleanup-receipts/"},
            "storages": {
                "photos": {
                    "url": storages.http.url,
                    "tokenSecret": {"name": SECRETS[0], "key": "token"},
                    "allowPlainHttp": True,  # traffic that never leaves the test's network namespace
                },
                "archive": {
                    "type": "s3",
                    **{key: s3[key] for key in ("bucket", "region", "endpoint", "allowPlainHttp")},
                    "credentialsSecret": {"name": SECRETS[1], "key": "credentials"},
                    "policy": policy,
                },
                "shared": {
                    "type": "filesystem",
                    "root": "/data/photos",
                    "pruneEmptyDirs": True,
                    "volume": {"persistentVolumeClaim": {"claimName": VOLUME_CLAIM}},
                    "policy": policy,
                },
            },
        },
    }


def install(cli: Cli, storages: Storages, image: str, workdir: Path, *extra: str) -> None:
    """The release's namespace and Secrets, then `helm install` with chart_values()."""
    cli.kubectl("create", "namespace", RELEASE_NAMESPACE)
    (workdir / "token").write_text(storages.token)
    for name, key, source in (
        (SECRETS[0], "token", workdir / "token"),
        (SECRETS[1], "credentials", storages.s3.credentials_file),
    ):
        cli.kubectl(
            "create", "secret", "generic", name, "-n", RELEASE_NAMESPACE, f"--from-file={key}={source}"
        )
    (workdir / "values.yaml").write_text(yaml.safe_dump(chart_values(storages, image)))
    cli.helm(
        "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "-f", str(workdir / "values.yaml"), *extra
    )


def secret_data(cli: Cli, name: str) -> dict[str, bytes]:
    secret = json.loads(cli.kubectl("get", "secret", name, "-n", RELEASE_NAMESPACE, "-o", "json").stdout)
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def rendered(cli: Cli, what: str) -> list[Manifest]:
    """The release's rendered documents: `helm get manifest` (what `helm template` gives) or `hooks`."""
    output = cli.helm("get", what, RELEASE, "-n", RELEASE_NAMESPACE).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]
