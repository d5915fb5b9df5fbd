"""The CLI finds its cluster as kubectl does: --kubeconfig, else KUBECONFIG, else ~/.kube/config, and
only when none of them exists, in a pod, the pod's service account."""

from __future__ import annotations

import shutil
from pathlib import Path

import certifi
import pytest
import yaml
from kubernetes.aio.client import ApiClient
from kubernetes.aio.config import ConfigException, incluster_config

from filecleanup.api import kube

IN_CLUSTER = "https://10.96.0.1:443"


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": namespace}}
                ],
                "current-context": "ctx",
            }
        )
    )
    return path


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pod's environment: the service's address, the account's token, CA and namespace; an empty
    home directory and no KUBECONFIG."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    shutil.copy(certifi.where(), account / "ca.crt")  # any CA bundle: nothing is dialled
    (account / "namespace").write_text("pod-namespace\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(account / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(account / "ca.crt"))
    monkeypatch.setattr(kube, "IN_CLUSTER_NAMESPACE", account / "namespace")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return home


async def connected(kubeconfig: str | None = None, context: str | None = None) -> tuple[str, str]:
    """The server the CLI would talk to, and its default namespace."""
    api, namespace = await kube.connect_as_kubectl(kubeconfig, context)
    try:
        assert isinstance(api, ApiClient)
        return api.configuration.host, namespace
    finally:
        await api.close()  # type: ignore[no-untyped-call]


async def test_kubeconfig_wins_over_the_pods_service_account(
    in_a_pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = write_kubeconfig(tmp_path / "listed", "https://listed:6443", "listed-ns")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{listed}")
    assert await connected() == ("https://listed:6443", "listed-ns")


async def test_home_kubeconfig_wins_over_the_pods_service_account(in_a_pod: Path) -> None:
    write_kubeconfig(in_a_pod / ".kube" / "config", "https://home:6443", "home-ns")
    assert await connected() == ("https://home:6443", "home-ns")


async def test_the_flag_wins_over_kubeconfig_which_wins_over_home(
    in_a_pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_kubeconfig(in_a_pod / ".kube" / "config", "https://home:6443", "home-ns")
    listed = write_kubeconfig(tmp_path / "listed", "https://listed:6443", "listed-ns")
    flag = write_kubeconfig(tmp_path / "flag", "https://flag:6443", "flag-ns")
    monkeypatch.setenv("KUBECONFIG", str(listed))
    assert await connected(str(flag)) == ("https://flag:6443", "flag-ns")
    assert await connected() == ("https://listed:6443", "listed-ns")


async def test_without_any_kubeconfig_a_pod_uses_its_service_account(
    in_a_pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await connected() == (IN_CLUSTER, "pod-namespace")
    (in_a_pod / ".kube").mkdir()
    (in_a_pod / ".kube" / "config").write_text("")  # empty: as kubectl, the pod's account still
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    assert await connected() == (IN_CLUSTER, "pod-namespace")


async def test_a_missing_kubeconfig_named_by_the_flag_is_an_error(in_a_pod: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigException, match="absent"):
        await connected(str(tmp_path / "absent"))


async def test_a_context_asked_for_needs_a_kubeconfig(in_a_pod: Path) -> None:
    with pytest.raises(
        ConfigException,
        match=r"no kubeconfig found \(looked for ~/\.kube/config\): set KUBECONFIG or give --kubeconfig",
    ):
        await connected(context="team")


async def test_the_files_of_kubeconfig_merge_the_first_one_winning(
    in_a_pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_kubeconfig(tmp_path / "first", "https://first:6443", "first-ns")
    second = write_kubeconfig(tmp_path / "second", "https://second:6443", "second-ns")
    document = yaml.safe_load(second.read_text())
    document["contexts"].append({"name": "other", "context": {"cluster": "c", "user": "u"}})
    second.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert await connected() == ("https://first:6443", "first-ns")
    assert await connected(context="other") == ("https://first:6443", "default")  # cluster c: first's
    del document["current-context"]
    second.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("KUBECONFIG", f"{second}:{first}")  # the current context: the first that sets one
    assert await connected() == ("https://second:6443", "second-ns")


async def test_outside_a_pod_without_a_kubeconfig_the_error_says_where_it_looked(
    in_a_pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(
        ConfigException,
        match=r"no kubeconfig found \(looked for ~/\.kube/config\), and not in a pod: set KUBECONFIG",
    ):
        await connected()


async def test_the_operator_keeps_kopfs_order_the_pods_account_first(
    in_a_pod: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kopf logs in with the service account first: the operator's own client must reach the same
    cluster as its watches."""
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "listed", "https://listed:6443", "x")))
    api = await kube.connect()
    try:
        assert api.configuration.host == IN_CLUSTER
    finally:
        await api.close()  # type: ignore[no-untyped-call]
