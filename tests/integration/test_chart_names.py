"""The names the chart gives its resources: release-chart, never the chart's name twice, the overrides
honoured, and every reference to a name (RBAC subjects and roles, the Lease, the mounted ConfigMaps and
Secrets, the `helm test` check, the install notes) naming what was rendered."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.commands import Cli, set_flags
from tests.docblocks import marked_blocks
from tests.kube import Kube

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "filecleanup-operator"
CHART_NAME = "filecleanup-operator"

# Every optional resource that carries a name of the chart's.
EVERYTHING = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.prometheusRule.enabled": "true",
    "podDisruptionBudget.enabled": "true",
    "config.receipts.storage": "photos",
    "dashboards.enabled": "true",
}


@pytest.fixture(scope="module")
def cli(helm: Path, kubeconfig: Path, crd: None) -> Cli:
    return Cli(helm, kubeconfig)


@pytest.mark.parametrize(
    ("release", "values", "fullname", "name"),
    [
        ("filecleanup-operator", {}, "filecleanup-operator", CHART_NAME),
        ("filecleanup", {}, "filecleanup", CHART_NAME),
        ("prod", {}, "prod-filecleanup-operator", CHART_NAME),
        ("prod-filecleanup-operator", {}, "prod-filecleanup-operator", CHART_NAME),
        ("prod", {"nameOverride": "cleaner"}, "prod-cleaner", "cleaner"),
        ("cleaner", {"nameOverride": "cleaner"}, "cleaner", "cleaner"),
        ("prod", {"fullnameOverride": "photo-cleanup"}, "photo-cleanup", CHART_NAME),
    ],
    ids=[
        "release-is-the-chart-name",
        "release-is-its-first-word",
        "other-release",
        "release-contains-the-chart-name",
        "nameOverride",
        "nameOverride-in-the-release-name",
        "fullnameOverride",
    ],
)
def test_resources_are_named_once_and_referred_to_by_that_name(  # noqa: PLR0917  (parameters)
    cli: Cli, kube: Kube, release: str, values: dict[str, str], fullname: str, name: str
) -> None:
    namespace = kube.create_namespace("names")
    flags = ["-n", namespace, *set_flags(values)]
    rendered = cli.helm("template", release, str(CHART), *flags, *set_flags(EVERYTHING)).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    # The notes only come from an install; no ServiceMonitor or PrometheusRule kind on this API server.
    installed = cli.helm("install", release, str(CHART), *flags, "--dry-run=server", "-o", "json").stdout
    notes: str = json.loads(installed)["info"]["notes"]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    names = {doc["metadata"]["name"] for doc in documents if doc["kind"] != "CustomResourceDefinition"}
    suffixes = {
        "pause",
        "leader-election",
        "report-key",
        "receipt-key",
        "test",
        "editor",
        "viewer",
        "dashboard",
    }
    assert names == {fullname} | {f"{fullname}-{suffix}" for suffix in suffixes}
    assert {
        doc["metadata"]["labels"]["app.kubernetes.io/name"]
        for doc in documents
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    } == {name}
    assert notes.startswith(f"{fullname} is installed in namespace {namespace}")

    deployment = by_kind["Deployment"][fullname]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == fullname
    assert fullname in by_kind["ServiceAccount"]
    args = pod["containers"][0]["args"]
    assert f"--leader-election-id={fullname}" in args
    lease_rules = by_kind["Role"][f"{fullname}-leader-election"]["rules"]
    assert [rule.get("resourceNames") for rule in lease_rules] == [[fullname], None]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] in by_kind["ConfigMap"]
    assert volumes["pause"]["configMap"]["name"] == f"{fullname}-pause"  # the ConfigMap people patch
    assert f"{fullname}-pause" in by_kind["ConfigMap"]
    assert volumes["report-key"]["secret"]["secretName"] in by_kind["Secret"]
    assert volumes["receipt-key"]["secret"]["secretName"] in by_kind["Secret"]

    for binding in [*by_kind["ClusterRoleBinding"].values(), *by_kind["RoleBinding"].values()]:
        assert binding["metadata"]["name"] in by_kind[binding["roleRef"]["kind"]]
        (subject,) = binding["subjects"]
        assert subject["name"] in by_kind["ServiceAccount"]
        expected_account = f"{fullname}-test" if binding["metadata"]["name"].endswith("-test") else fullname
        assert subject["name"] == expected_account

    service = by_kind["Service"][fullname]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    check = by_kind["Pod"][f"{fullname}-test"]["spec"]["containers"][0]["command"]
    assert f"--service={fullname}" in check
    (proxy_rule,) = by_kind["Role"][f"{fullname}-test"]["rules"]
    assert proxy_rule["resourceNames"] == [f"{fullname}:health", f"{fullname}:metrics"]
    assert (
        by_kind["PodDisruptionBudget"][fullname]["spec"]["selector"]["matchLabels"]
        == service["spec"]["selector"]
    )
    assert by_kind["ServiceMonitor"][fullname]["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )


def test_a_service_account_of_ones_own_is_the_one_bound(cli: Cli, kube: Kube) -> None:
    values = {"serviceAccount.create": "false", "serviceAccount.name": "platform-operators"}
    rendered = cli.helm(
        "template", "prod", str(CHART), "-n", kube.create_namespace("names"), *set_flags(values)
    ).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    accounts = {doc["metadata"]["name"] for doc in documents if doc["kind"] == "ServiceAccount"}
    assert accounts == {"prod-filecleanup-operator-test"}  # the `helm test` check's own
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operators"
    bindings = [doc for doc in documents if doc["kind"] in {"ClusterRoleBinding", "RoleBinding"}]
    operator_bindings = [doc for doc in bindings if not doc["metadata"]["name"].endswith("-test")]
    assert operator_bindings
    assert {subject["name"] for doc in operator_bindings for subject in doc["subjects"]} == {
        "platform-operators"
    }


def test_the_docs_patch_the_pause_configmap_of_the_readmes_release(cli: Cli) -> None:
    install = "\n".join(block.text for block in marked_blocks("helm-quickstart"))
    after = "\n".join(block.text for block in marked_blocks("after-helm-quickstart"))
    quickstart = re.search(r'"\$HELM" install (\S+) charts/filecleanup-operator -n (\S+)', install)
    patched = re.search(r"kubectl -n (\S+) patch configmap\s+(\S+)", after)
    assert quickstart, "the README's Install with Helm names no release"
    assert patched, "docs/operating.md shows no tested way to pause at run time"
    release, namespace = quickstart.groups()
    rendered = cli.helm("template", release, str(CHART), "-n", namespace).stdout
    deployment = next(doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Deployment")
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    assert patched.groups() == (namespace, volumes["pause"]["configMap"]["name"])
