"""An upgrade from an earlier chart to this one, on the suite's API server (docs/versioning.md, "How an
upgrade is tested"): the release is deployed at its second revision, every object it renders is the new
chart's, the CRD gains the fields added since, and a FileCleanup created under the old CRD, still
waiting, is read back intact and finished by the upgraded release's operator.

The earlier chart is the one at commit c4a8ee8 ("Merge issue 17"), taken with `git archive`. It is
pinned by hash, not as HEAD~N, so the test means the same thing as commits are added. It is the last
merge on the main line before the chart and the CRD changed the most (spec.prefix, spec.startAfter,
status.verification, receipts, holds; the chart's tenant roles, the values schema for globals, the
dashboard), with the same API group and version (filecleanup.dev/v1alpha1) and the same value names
for what this test sets. No release was tagged before 0.2.0; once one is, the test should start from the
newest tag instead.

No kubelet here: as in test_chart.py, the Deployment's command runs locally as the release's
ServiceAccount, with the configuration the release installed."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.commands import Cli, set_flags
from tests.kube import Kube
from tools.devkit.chart import installed_operator, service_account_kubeconfig
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "filecleanup-operator"
CRD_FILE = ROOT / "crds" / "filecleanup.dev_filecleanups.yaml"
CRD_NAME = "filecleanups.filecleanup.dev"
EARLIER = "c4a8ee8447bca3f10e44fab822467e8d81d43353"  # the docstring says why this one
ADDED_SINCE = {"prefix", "startAfter"}  # spec fields the earlier CRD lacks


def git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


@pytest.fixture(scope="module")
def earlier_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if git("cat-file", "-e", f"{EARLIER}^{{commit}}").returncode != 0:
        shallow = git("rev-parse", "--is-shallow-repository").stdout.strip() == b"true"
        if shallow:
            pytest.skip(f"a shallow clone: commit {EARLIER} is not here (git fetch --unshallow)")
        pytest.fail(f"commit {EARLIER} is not in this repository")
    archive = git("archive", EARLIER, "charts/filecleanup-operator")
    assert archive.returncode == 0, archive.stderr
    into = tmp_path_factory.mktemp("earlier")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "charts" / "filecleanup-operator"


@pytest.fixture(scope="module")
def cli(helm: Path, kubeconfig: Path, crd: None) -> Cli:
    return Cli(helm, kubeconfig)


def spec_fields(cli: Cli) -> set[str]:
    crd = json.loads(cli.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    (version,) = crd["spec"]["versions"]
    return set(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def rendered(cli: Cli, release: str, namespace: str) -> list[dict[str, Any]]:
    manifest = cli.helm("get", "manifest", release, "-n", namespace).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def test_an_earlier_release_upgrades_and_its_waiting_object_finishes(  # noqa: PLR0917  (fixtures)
    cli: Cli,
    kube: Kube,
    kubeconfig: Path,
    storage: StorageProcess,
    earlier_chart: Path,
    tmp_path: Path,
) -> None:
    namespace, release = kube.create_namespace("upgrade"), "fc"
    watched = kube.create_namespace("albums")
    values = {
        "fullnameOverride": release,
        "scope": "namespaced",
        "watchNamespaces": "{" + watched + "}",
        "config.storages.photos.url": storage.url,
    }
    # The suite's CRD, as the earlier release would have created it: that release owns it and renders it.
    cli.kubectl("annotate", "--overwrite", "crd", CRD_NAME, f"meta.helm.sh/release-name={release}")
    cli.kubectl("annotate", "--overwrite", "crd", CRD_NAME, f"meta.helm.sh/release-namespace={namespace}")
    cli.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")
    try:
        cli.helm("install", release, str(earlier_chart), "-n", namespace, *set_flags(values))
        earlier_version = yaml.safe_load((earlier_chart / "Chart.yaml").read_text())["version"]
        assert not ADDED_SINCE & spec_fields(cli)  # the earlier CRD is the one served now
        keys = album_keys(watched, 20)
        created = create_cleanup(kube, watched, "in-flight", keys)  # no operator runs: it waits

        cli.helm("upgrade", release, str(CHART), "-n", namespace, *set_flags(values))

        (listed,) = json.loads(cli.helm("list", "-n", namespace, "-o", "json").stdout)
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        assert (listed["status"], listed["revision"], listed["chart"]) == (
            "deployed",
            "2",
            f"filecleanup-operator-{chart['version']}",
        )
        history = json.loads(cli.helm("history", release, "-n", namespace, "-o", "json").stdout)
        assert [(entry["chart"], entry["status"]) for entry in history] == [
            (f"filecleanup-operator-{earlier_version}", "superseded"),
            (f"filecleanup-operator-{chart['version']}", "deployed"),
        ]
        # Every object the release renders now is the new chart's, the CRD among them.
        documents = rendered(cli, release, namespace)
        assert "CustomResourceDefinition" in {doc["kind"] for doc in documents}
        for doc in documents:
            live = kube.get(
                doc["apiVersion"], doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace")
            )
            assert live["metadata"]["labels"]["helm.sh/chart"] == listed["chart"], doc["kind"]
        assert spec_fields(cli) >= ADDED_SINCE

        waiting = get_cleanup(kube, watched, "in-flight")
        assert waiting["metadata"]["uid"] == created["metadata"]["uid"]
        assert waiting["spec"]["keys"] == keys

        # The upgraded release's operator, as its ServiceAccount with its configuration, finishes it.
        config, args = installed_operator(kubeconfig, namespace, release, tmp_path)
        account = service_account_kubeconfig(kubeconfig, namespace, release, tmp_path / "sa-kubeconfig")
        operator = OperatorProcess(tmp_path, account, config, [])
        operator.start(*args)
        try:
            done = wait_for_phase(kube, watched, "in-flight", "Succeeded")
        finally:
            operator.stop()
        assert done["status"]["deleted"] == len(keys)
        assert "Forbidden" not in operator.log_text()
    finally:
        cli.helm("uninstall", release, "-n", namespace, check=False)
        # Whatever happened, the suite goes on with this tree's CRD.
        cli.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    assert kube.list_objects(API_VERSION, KIND, watched)  # uninstall keeps the objects
