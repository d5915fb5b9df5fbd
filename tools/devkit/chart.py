"""Running an installed chart's operator locally: there is no kubelet on the local control plane, so
the Deployment's container command runs here, authenticated as the chart's ServiceAccount."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml


def kubectl_json(kubeconfig: Path, *args: str) -> Any:
    output = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output)


def service_account_kubeconfig(admin_kubeconfig: Path, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a token from the TokenRequest API."""
    token = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(admin_kubeconfig),
            "create",
            "token",
            account,
            "--namespace",
            namespace,
            "--duration=1h",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def installed_operator(
    kubeconfig: Path, namespace: str, name: str, workdir: Path
) -> tuple[dict[str, Any], list[str]]:
    """The installed configuration file's content, and the Deployment's arguments other than the
    configuration path and the liveness and metrics addresses (which are the pod's). The report key
    the pod mounts from its Secret is copied into ``workdir``, and the configuration names the copy."""
    config_map = kubectl_json(kubeconfig, "get", "configmap", name, "-n", namespace)
    deployment = kubectl_json(kubeconfig, "get", "deployment", name, "-n", namespace)
    pod = deployment["spec"]["template"]["spec"]
    args: list[str] = pod["containers"][0]["args"]
    local_args = [arg for arg in args if not arg.startswith(("--config", "--liveness", "--metrics"))]
    # What the downward API gives the pod (POD_NAMESPACE): the Lease lives in the release's namespace.
    local_args.append(f"--leader-election-namespace={namespace}")
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    report_key = next(volume["secret"] for volume in pod["volumes"] if volume["name"] == "report-key")
    secret = kubectl_json(kubeconfig, "get", "secret", report_key["secretName"], "-n", namespace)
    key_file = workdir / "report-key"
    key_file.write_bytes(base64.b64decode(secret["data"][report_key["items"][0]["key"]]))
    key_file.chmod(0o400)
    config["reportKeyFile"] = str(key_file)
    return config, local_args
