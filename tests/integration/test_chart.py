"""The Helm chart against the real API server: lint, server-side dry-runs, an install whose
ServiceAccount runs the operator, least-privilege RBAC, and a CRD that survives uninstall."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from filecleanup.api.config import OperatorConfig, StoragePolicy
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import API_VERSION, KIND, FileCleanupSpec
from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.commands import Cli, set_flags
from tests.kube import Kube
from tools.devkit.chart import installed_operator, service_account_kubeconfig
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess
from tools.envtest.polling import eventually

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "filecleanup-operator"
CRD_NAME = "filecleanups.filecleanup.dev"


def prometheus_operator_crd(kind: str) -> dict[str, Any]:
    """A stand-in for one of prometheus-operator's CRDs, so that its objects can be dry-run here."""
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


def assert_alerts_name_exported_metrics(rules: dict[str, Any]) -> None:
    """Every metric an alert reads is one the operator exports (a renamed metric would leave an alert
    that never fires), and the erasure deadline is the configured one."""
    families = list(Metrics().registry.collect())
    exported = (
        {family.name for family in families}
        | {f"{family.name}_total" for family in families if family.type == "counter"}
        | {
            f"{family.name}_{suffix}"
            for family in families
            if family.type == "histogram"
            for suffix in ("count", "sum", "bucket")
        }
    )
    exprs = {rule["alert"]: rule["expr"] for group in rules["spec"]["groups"] for rule in group["rules"]}
    named = {name for expr in exprs.values() for name in re.findall(r"filecleanup_[a-z_]+", expr)}
    assert named <= exported, named - exported
    assert exprs["FileCleanupErasureDeadline"].endswith(f"> {25 * 86_400}")


@pytest.fixture(scope="module")
def cli(helm: Path, kubeconfig: Path, crd: None) -> Cli:
    return Cli(helm, kubeconfig)


NAMESPACED = {"scope": "namespaced"}


@pytest.mark.parametrize("values", sorted(CHART.glob("ci/*-values.yaml")), ids=lambda path: path.name)
def test_chart_lints_and_renders(cli: Cli, values: Path) -> None:
    linted = cli.helm("lint", str(CHART), "--strict", "-f", str(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout
    rendered = cli.helm("template", "fc", str(CHART), "-f", str(values))
    assert "kind: Deployment" in rendered.stdout
    for result in (linted, rendered):
        assert "symbolic link" not in result.stderr  # the chart's files are its own


def test_make_chart_lint_refuses_what_the_chart_refuses() -> None:
    result = subprocess.run(["make", "chart-lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "scope=namespaced without watchNamespaces: refused" in result.stdout


def test_values_schema_rejects_unknown_keys_and_inline_tokens(cli: Cli) -> None:
    unknown = cli.helm("template", "x", str(CHART), "--set", "colour=red", check=False)
    assert unknown.returncode != 0
    assert "additional properties 'colour' not allowed" in unknown.stderr
    inline = cli.helm(
        "template", "x", str(CHART), "--set", "config.storages.photos.token=s3cr3t", check=False
    )
    assert inline.returncode != 0
    assert "additional properties 'token' not allowed" in inline.stderr


def test_namespaced_scope_needs_namespaces(cli: Cli) -> None:
    # helm lint disarms `fail`: only rendering shows the refusal, which is why `make chart-lint` renders.
    result = cli.helm("template", "x", str(CHART), "--set", "scope=namespaced", check=False)
    assert result.returncode != 0
    assert "scope: namespaced needs watchNamespaces to list at least one namespace" in result.stderr


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            **NAMESPACED,
            "podDisruptionBudget.enabled": "true",
            "flowControl.enabled": "true",
            "metrics.enabled": "true",
            "metrics.serviceMonitor.enabled": "true",
            "metrics.prometheusRule.enabled": "true",
            "config.receipts.storage": "archive",
            "config.storages.videos.type": "http",
            "config.storages.videos.url": "https://videos.example.internal/delete",
            "config.storages.videos.tokenSecret.name": "videos-token",
            "config.storages.videos.tokenSecret.key": "token",
            "config.storages.videos.policy.allowedNamespaces": "{videos}",
            "config.storages.videos.policy.keyPrefix": "",
            "config.storages.archive.type": "s3",
            "config.storages.archive.bucket": "photo-archive",
            "config.storages.archive.endpoint": "https://minio.example.internal",
            "config.storages.archive.credentialsSecret.name": "archive-aws",
            "config.storages.archive.credentialsSecret.key": "credentials",
            "config.storages.archive.policy.allowedNamespaces": "*",
            "config.storages.archive.policy.keyPrefix": "tenants/{namespace}/",
            "config.storages.shared.type": "filesystem",
            "config.storages.shared.root": "/data/photos",
            "config.storages.shared.volume.persistentVolumeClaim.claimName": "photos",
            "config.storages.shared.policy.allowedNamespaces": "*",
            "config.storages.shared.policy.keyPrefix": "",
            "config.storages.blobs.type": "azureblob",
            "config.storages.blobs.account": "photostore",
            "config.storages.blobs.container": "photos",
            "config.storages.blobs.auth": "sharedKey",
            "config.storages.blobs.accountKeySecret.name": "blobs-key",
            "config.storages.blobs.accountKeySecret.key": "key",
            "config.storages.blobs.policy.allowedNamespaces": "*",
            "config.storages.blobs.policy.keyPrefix": "",
        },
    ],
    ids=["default", "namespaced-pdb-metrics-five-storages"],
)
def test_rendered_chart_passes_a_server_side_dry_run_under_restricted_pod_security(
    cli: Cli, kube: Kube, values: dict[str, str]
) -> None:
    for kind in ("ServiceMonitor", "PrometheusRule"):
        kube.apply_crd(prometheus_operator_crd(kind))
    release_namespace = kube.create_namespace("chart")
    cli.kubectl("label", "namespace", release_namespace, "pod-security.kubernetes.io/enforce=restricted")
    watched = [kube.create_namespace("watched"), kube.create_namespace("watched")]
    if values.get("scope") == "namespaced":
        values = {**values, "watchNamespaces": "{" + ",".join(watched) + "}"}
    rendered = cli.helm("template", "fc", str(CHART), "-n", release_namespace, *set_flags(values)).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered) if doc)

    result = cli.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", "-", stdin=rendered
    )
    assert "PodSecurity" not in result.stderr  # no "would violate PodSecurity restricted" warning
    tenant_roles = ("fc-filecleanup-operator-editor", "fc-filecleanup-operator-viewer")
    roles = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"])
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "Role" and doc["metadata"]["name"] not in tenant_roles
    }
    # Leader election and the `helm test` check: in the release's namespace only, whatever the scope.
    assert {
        (release_namespace, "fc-filecleanup-operator-leader-election"),
        (release_namespace, "fc-filecleanup-operator-test"),
    } <= roles
    if values.get("scope") == "namespaced":
        assert {namespace for namespace, _ in roles} == {release_namespace, *watched}
        assert kinds.count("RoleBinding") == 4
        assert kinds.count("Role") == 4 + len(tenant_roles) * len(watched)  # the tenants' roles in each
        assert {"PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"} <= set(kinds)
        assert {"FlowSchema", "PriorityLevelConfiguration"} <= set(kinds)
        rules = next(doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "PrometheusRule")
        assert_alerts_name_exported_metrics(rules)
        assert "ClusterRole" not in kinds
        config = next(doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "ConfigMap")
        operator_config = yaml.safe_load(config["data"]["config.yaml"])
        assert operator_config["receipts"] == {
            "storage": "archive",
            "keyFile": "/var/run/secrets/filecleanup-receipts/receipt-key",
        }
        assert "fc-filecleanup-operator-receipt-key" in {
            doc["metadata"]["name"] for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Secret"
        }
        storages = operator_config["storages"]
        assert storages["videos"]["tokenFile"] == "/var/run/secrets/filecleanup/videos/token"
        assert storages["archive"]["credentialsFile"] == "/var/run/secrets/filecleanup/archive/credentials"
        assert storages["blobs"]["accountKeyFile"] == "/var/run/secrets/filecleanup/blobs/key"
        assert "accountKeySecret" not in storages["blobs"]
        assert storages["shared"] == {
            "type": "filesystem",
            "root": "/data/photos",
            "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
        }
        deployment = next(doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Deployment")
        mounts = {
            m["name"]: m["mountPath"]
            for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        }
        assert mounts["volume-shared"] == "/data/photos"
        assert mounts["secret-archive"] == "/var/run/secrets/filecleanup/archive"
        assert mounts["secret-blobs"] == "/var/run/secrets/filecleanup/blobs"
        # The operator accepts what the chart renders; only the files the pod would mount are missing here.
        with pytest.raises(ValidationError) as invalid:
            OperatorConfig.model_validate(yaml.safe_load(config["data"]["config.yaml"]))
        missing = sorted(".".join(map(str, error["loc"][:2])) for error in invalid.value.errors())
        assert missing == [
            "receipts.keyFile",
            "reportKeyFile",
            "storages.archive",
            "storages.blobs",
            "storages.videos",
        ]
        assert all("is not a readable file" in error["msg"] for error in invalid.value.errors())
    else:
        assert {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment"} <= set(kinds)


@pytest.fixture
def release(cli: Cli, kube: Kube) -> Iterator[tuple[str, str]]:
    namespace = kube.create_namespace("fc-system")
    yield namespace, "fc"
    cli.helm("uninstall", "fc", "-n", namespace, check=False)


@pytest.mark.parametrize("scope", ["namespaced", "cluster-wide"])
def test_installed_service_account_can_run_the_operator(  # noqa: PLR0917  (fixtures)
    cli: Cli,
    kube: Kube,
    kubeconfig: Path,
    storage: StorageProcess,
    tmp_path: Path,
    release: tuple[str, str],
    scope: str,
) -> None:
    namespace, name = release
    watched = kube.create_namespace("albums")
    values = {
        "scope": scope,
        "crds.enabled": "false",  # the suite's CRD is already there, not owned by this release
        "config.storages.photos.url": storage.url,
        "fullnameOverride": name,
    }
    if scope == "namespaced":
        values["watchNamespaces"] = "{" + watched + "}"
    cli.helm("install", name, str(CHART), "-n", namespace, *set_flags(values))

    # No kubelet here: run the Deployment's container command locally, as its ServiceAccount.
    config, args = installed_operator(kubeconfig, namespace, name, tmp_path)
    account_kubeconfig = service_account_kubeconfig(kubeconfig, namespace, name, tmp_path / "sa-kubeconfig")
    assert not any(arg.startswith("--metrics") for arg in args)  # the pod's address, not ours
    if scope == "cluster-wide":
        assert not any(arg.startswith("--namespace") for arg in args)
        args.append(f"--namespace={watched}")  # keep clear of the other tests' objects
    else:
        assert f"--namespace={watched}" in args
    operator = OperatorProcess(tmp_path, account_kubeconfig, config, [])
    operator.start(*args)
    try:
        create_cleanup(kube, watched, "album-9", album_keys(watched, 20), ttlSecondsAfterFinished=1)
        done = wait_for_phase(kube, watched, "album-9", "Succeeded")
        assert done["status"]["deleted"] == 20

        def deleted() -> bool:
            return not kube.list_objects(API_VERSION, KIND, watched)

        eventually("the TTL deletion, which needs the delete verb", deleted)
        lease = kube.get("coordination.k8s.io/v1", "Lease", name, namespace=namespace)
    finally:
        operator.stop()
    log = operator.log_text()
    assert "status=403" not in log  # the API server refused nothing
    assert "Forbidden" not in log
    assert "--leader-elect" in args
    assert lease["spec"]["holderIdentity"]  # the replica took its Lease through its own RBAC
    assert [reason for _, reason, _ in kube.events(watched, "album-9")] == ["Completed"]


def test_rbac_is_least_privilege(cli: Cli, kube: Kube, release: tuple[str, str]) -> None:
    namespace, name = release
    watched = kube.create_namespace("albums")
    other = kube.create_namespace("other")
    values = {"scope": "namespaced", "watchNamespaces": "{" + watched + "}", "crds.enabled": "false"}
    cli.helm(
        "install", name, str(CHART), "-n", namespace, "--set", f"fullnameOverride={name}", *set_flags(values)
    )
    account = f"{namespace}:{name}"

    for verb in ("list", "watch", "patch", "delete"):
        assert cli.can_i(account, verb, "filecleanups.filecleanup.dev", "-n", watched)
    assert cli.can_i(account, "patch", "filecleanups.filecleanup.dev", "--subresource=status", "-n", watched)
    assert cli.can_i(account, "create", "events", "-n", watched)

    assert not cli.can_i(account, "list", "filecleanups.filecleanup.dev", "-n", other)
    assert not cli.can_i(account, "create", "events", "-n", other)
    assert not cli.can_i(account, "list", "filecleanups.filecleanup.dev", "--all-namespaces")
    assert not cli.can_i(account, "create", "filecleanups.filecleanup.dev", "-n", watched)
    assert not cli.can_i(account, "update", "filecleanups.filecleanup.dev", "-n", watched)
    assert not cli.can_i(account, "get", "secrets", "-n", watched)
    assert not cli.can_i(account, "get", "secrets", "-n", namespace)
    assert not cli.can_i(account, "list", "secrets", "--all-namespaces")
    assert not cli.can_i(account, "get", "configmaps", "-n", namespace)
    assert not cli.can_i(account, "list", "pods", "-n", watched)
    assert not cli.can_i(account, "delete", "customresourcedefinitions.apiextensions.k8s.io")
    assert not cli.can_i(account, "list", "namespaces")


def test_cluster_wide_rbac_reads_no_secrets(cli: Cli, release: tuple[str, str]) -> None:
    namespace, name = release
    cli.helm(
        "install",
        name,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"fullnameOverride={name}",
        "--set",
        "crds.enabled=false",
    )
    account = f"{namespace}:{name}"
    assert cli.can_i(account, "list", "filecleanups.filecleanup.dev", "--all-namespaces")
    assert not cli.can_i(account, "list", "secrets", "--all-namespaces")
    assert not cli.can_i(account, "get", "secrets", "-n", namespace)
    assert not cli.can_i(account, "list", "deployments.apps", "--all-namespaces")
    assert not cli.can_i(account, "create", "filecleanups.filecleanup.dev", "--all-namespaces")


def test_crd_is_upgraded_in_place_and_kept_on_uninstall(
    cli: Cli, kube: Kube, release: tuple[str, str]
) -> None:
    namespace, name = release
    adopt_crd(cli, name, namespace)
    watched = kube.create_namespace("albums")
    create_cleanup(kube, watched, "keep-me", ["a"])

    cli.helm("install", name, str(CHART), "-n", namespace, "--set", f"fullnameOverride={name}")
    cli.helm(
        "upgrade",
        name,
        str(CHART),
        "-n",
        namespace,
        "--set",
        f"fullnameOverride={name}",
        "--set",
        "logFormat=plain",
    )
    crd = json.loads(cli.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/name"] == "filecleanup-operator"

    result = cli.helm("uninstall", name, "-n", namespace)
    assert CRD_NAME in result.stdout + result.stderr  # helm reports the kept resource
    assert (
        cli.kubectl("get", "crd", CRD_NAME, "-o", "name").stdout.strip()
        == f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}"
    )
    assert kube.get(API_VERSION, KIND, "keep-me", namespace=watched)["spec"]["keys"] == ["a"]


def test_helm_test_hook_checks_through_the_service_proxy_with_one_verb(cli: Cli) -> None:
    rendered = cli.helm("template", "fc", str(CHART), "--show-only", "templates/tests/selfcheck.yaml").stdout
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}
    assert {doc["metadata"]["annotations"]["helm.sh/hook"] for doc in documents.values()} == {"test"}
    pod = documents["Pod"]
    assert pod["spec"]["containers"][0]["command"][:3] == ["python", "-m", "filecleanup.controller.selfcheck"]
    assert "--service=fc-filecleanup-operator" in pod["spec"]["containers"][0]["command"]
    assert "--metrics-port=metrics" in pod["spec"]["containers"][0]["command"]
    assert documents["Role"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["services/proxy"],
            "resourceNames": ["fc-filecleanup-operator:health", "fc-filecleanup-operator:metrics"],
            "verbs": ["get"],
        }
    ]
    service = yaml.safe_load(
        cli.helm("template", "fc", str(CHART), "--show-only", "templates/service.yaml").stdout
    )
    selector = service["spec"]["selector"].items()
    assert not selector <= pod["metadata"]["labels"].items()  # the Service never leads to the check itself


def adopt_crd(cli: Cli, release: str, namespace: str) -> None:
    """Mark the suite's CRD as the release's, as `helm install` would have created it."""
    cli.kubectl(
        "annotate",
        "--overwrite",
        "crd",
        CRD_NAME,
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    )
    cli.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")


def test_a_second_release_uses_the_crd_another_release_owns(cli: Cli, kube: Kube) -> None:
    first, second = kube.create_namespace("team-a"), kube.create_namespace("team-b")
    # A CRD applied with kubectl: a release uses it as it is instead of failing Helm's ownership check.
    cli.kubectl("annotate", "crd", CRD_NAME, "meta.helm.sh/release-name-", "meta.helm.sh/release-namespace-")
    try:
        installed = cli.helm(
            "install", "team-a", str(CHART), "-n", first, "--set", "controllerName=example.com/team-a"
        )
        assert "The FileCleanup CRD is managed by something other than Helm; this release uses it" in (
            installed.stdout
        )
        adopt = f"meta.helm.sh/release-name=team-a meta.helm.sh/release-namespace={first}"
        assert adopt in installed.stdout
        # Once the first release owns it, its upgrades render it; a second release leaves it alone.
        adopt_crd(cli, "team-a", first)
        cli.helm("upgrade", "team-a", str(CHART), "-n", first, "--set", "controllerName=example.com/team-a")
        flags = ["-n", second, "--set", "controllerName=example.com/team-b"]
        installed = cli.helm("install", "team-b", str(CHART), *flags)
        note = f"The FileCleanup CRD is managed by release team-a in namespace {first}; this release uses it"
        assert note in installed.stdout
        assert note in cli.helm("upgrade", "team-b", str(CHART), *flags).stdout
        assert "kind: CustomResourceDefinition" in cli.helm("get", "manifest", "team-a", "-n", first).stdout
        assert "CustomResourceDefinition" not in cli.helm("get", "manifest", "team-b", "-n", second).stdout
    finally:
        cli.helm("uninstall", "team-b", "-n", second, check=False)
        cli.helm("uninstall", "team-a", "-n", first, check=False)
    crd = json.loads(cli.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "team-a"  # kept on uninstall


DEFAULT_POLICY = yaml.safe_load((CHART / "values.yaml").read_text())["config"]["storages"]["photos"]["policy"]


@pytest.mark.parametrize(
    ("values", "policy", "namespace"),
    [
        ({}, DEFAULT_POLICY, "default"),
        (
            {
                **NAMESPACED,
                "watchNamespaces": "{photos,videos}",
                "config.storages.photos.policy.allowedNamespaces": "{videos}",
                "config.storages.photos.policy.keyPrefix": "tenants/{namespace}/",
            },
            {"allowedNamespaces": ["videos"], "keyPrefix": "tenants/{namespace}/"},
            "videos",  # watched, and the one the policy allows
        ),
    ],
    ids=["default", "namespaced-tenants"],
)
def test_notes_example_passes_the_storage_policy(
    cli: Cli, kube: Kube, values: dict[str, str], policy: dict[str, Any], namespace: str
) -> None:
    release = json.loads(
        cli.helm(
            "install",
            "fc",
            str(CHART),
            "-n",
            kube.create_namespace("notes"),
            "--dry-run=server",
            "-o",
            "json",
            *set_flags(values),
        ).stdout
    )
    notes: str = release["info"]["notes"]
    example = re.search(r"kubectl apply -n (\S+) -f - <<YAML\n(.*?)\n\s*YAML\n", notes, re.DOTALL)
    assert example, notes
    spec = FileCleanupSpec.model_validate(yaml.safe_load(textwrap.dedent(example[2]))["spec"])
    storage_policy = StoragePolicy.model_validate(policy)
    assert example[1] == namespace
    assert storage_policy.allows(namespace)
    assert spec.keys
    assert all(key.startswith(storage_policy.prefix_for(namespace)) for key in spec.keys), spec.keys


def test_helm_test_check_runs_as_its_account_and_names_what_does_not_answer(
    cli: Cli, kube: Kube, kubeconfig: Path, tmp_path: Path
) -> None:
    """No kubelet here, so no operator pod behind the Service: the check must find the CRD served (by
    discovery), be allowed every proxy call it makes (no 403), and fail naming both ports."""
    namespace = kube.create_namespace("selfcheck")
    rendered = cli.helm(
        "template",
        "fc",
        str(CHART),
        "-n",
        namespace,
        "--show-only",
        "templates/service.yaml",
        "--show-only",
        "templates/tests/selfcheck.yaml",
    ).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    pod = next(doc for doc in documents if doc["kind"] == "Pod")
    for document in documents:
        if document["kind"] != "Pod":
            kube.create(document, namespace=namespace)
    account = pod["spec"]["serviceAccountName"]
    account_kubeconfig = service_account_kubeconfig(kubeconfig, namespace, account, tmp_path / "kubeconfig")
    command = pod["spec"]["containers"][0]["command"]
    assert command[0] == "python"
    result = subprocess.run(
        [sys.executable, *command[1:]],
        # The worktree's package (installed editable in the venv) and the account's credentials.
        env={**os.environ, "KUBECONFIG": str(account_kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    problems = result.stderr.splitlines()
    assert len(problems) == 2, problems  # the CRD is served: no problem about it
    assert problems[0].startswith(f"FAIL: the operator did not answer through Service {namespace}/")
    assert problems[1].startswith(f"FAIL: the operator's metrics did not answer through Service {namespace}/")
    assert "403" not in result.stderr  # its Role allows both ports


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), "filecleanup/filecleanup-operator:{app_version}"),
        (("--set", "image.tag=dev"), "filecleanup/filecleanup-operator:dev"),
        (("--set", f"image.digest=sha256:{'a' * 64}"), f"filecleanup/filecleanup-operator@sha256:{'a' * 64}"),
    ],
    ids=["app-version", "tag", "digest-pins-it"],
)
def test_the_operator_and_its_check_run_the_image_the_values_name(
    cli: Cli, flags: tuple[str, ...], expected: str
) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    rendered = cli.helm(
        "template",
        "fc",
        str(CHART),
        "--show-only",
        "templates/deployment.yaml",
        "--show-only",
        "templates/tests/selfcheck.yaml",
        *flags,
    ).stdout
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}
    operator = documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    check = documents["Pod"]["spec"]["containers"][0]["image"]
    assert operator == check == expected.format(app_version=app_version)


def test_grafana_dashboard_is_a_configmap_the_sidecar_loads(cli: Cli, kube: Kube) -> None:
    monitoring = kube.create_namespace("monitoring")
    values = {
        "dashboards.enabled": "true",
        "dashboards.namespace": monitoring,
        "dashboards.annotations.grafana_folder": "Storage",
    }
    rendered = cli.helm(
        "template", "fc", str(CHART), "--show-only", "templates/dashboard-configmap.yaml", *set_flags(values)
    ).stdout
    configmap = yaml.safe_load(rendered)
    assert configmap["metadata"]["namespace"] == monitoring  # where the sidecar looks
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    (dashboard,) = configmap["data"].values()
    shipped = (CHART / "files" / "dashboards" / "filecleanup-operator.json").read_text()
    assert json.loads(dashboard) == json.loads(shipped)
    cli.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)

    off = cli.helm("template", "fc", str(CHART), "--set", "metrics.enabled=false", *set_flags(values)).stdout
    assert "grafana_dashboard" not in off  # no metrics, nothing to show


def test_a_digest_that_is_not_one_is_refused(cli: Cli) -> None:
    refused = cli.helm("template", "fc", str(CHART), "--set", "image.digest=latest", check=False)
    assert refused.returncode != 0
    assert "digest" in refused.stderr
