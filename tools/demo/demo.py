"""``make demo``: the main job on the local control plane, end to end.

With ``--helm`` (``make demo-helm``) the chart is installed first and the operator runs as the chart's
ServiceAccount, with the chart's configuration and arguments (there is no kubelet to run its pod).

It starts a sample storage holding two albums (``--storage``: the reference HTTP server, where one
file answers with an error the first time to show a retry round; moto's S3 server; or a directory),
starts the operator, creates a FileCleanup for one album, waits, and prints ``kubectl get
filecleanups`` and the object's events. The control plane keeps running (``make cluster-down`` stops
it); the storage and the operator are stopped.

    python -m tools.demo.demo --kubeconfig .cluster/kubeconfig --workdir .cluster/demo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from filecleanup.album.client import file_cleanup
from filecleanup.api.models import GROUP, PLURAL
from tools.devkit.chart import installed_operator, service_account_kubeconfig
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import (
    AzuriteProcess,
    DirectoryStorage,
    FakeGcsProcess,
    SampleStorage,
    SeaweedProcess,
    StorageProcess,
)
from tools.envtest.polling import eventually

STORAGES = ["http", "s3", "gcs", "azureblob", "filesystem"]
REPOSITORY = Path(__file__).parents[2]
CRDS = REPOSITORY / "crds"
CHART = REPOSITORY / "charts" / "filecleanup-operator"
RELEASE = "filecleanup"
RELEASE_NAMESPACE = "filecleanup-system"
ALBUM = "album-42"
DEMO_CONTROLLER = "filecleanup.dev/demo"
WAIT_SECONDS = 60


def kubectl(kubeconfig: Path, *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def album_keys(album: str, count: int) -> list[str]:
    return [f"albums/{album}/photo-{i:03d}.jpg" for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--helm", type=Path, help="install the chart with this helm binary first")
    parser.add_argument("--storage", choices=STORAGES, default="http", help="the backend")
    args = parser.parse_args(argv)
    if args.helm and args.storage != "http":
        parser.error("--helm runs with the HTTP storage: the chart mounts credentials and volumes in a pod")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # keep order with kubectl's output
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    storage = sample_storage(args.storage, args.workdir)
    keys = album_keys("42", 120)
    if args.helm:
        url = str(storage.operator_storage()["url"])
        operator, operator_args = install_chart(args.helm, args.kubeconfig, url, args.workdir)
    else:
        kubectl(args.kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        # The policy a real installation would have: only this namespace, only album keys.
        policy = {"allowedNamespaces": ["default"], "keyPrefix": "albums/"}
        config = {
            "defaultStorage": "photos",
            "storages": {"photos": {**storage.operator_storage(), "policy": policy}},
        }
        # A controller name of its own: an operator the chart installed in the same cluster leaves the
        # demo's object alone, and the demo's operator leaves the chart's objects alone.
        operator = OperatorProcess(args.workdir, args.kubeconfig, config, ["default"])
        operator_args = ["--controller-name", DEMO_CONTROLLER]
    kubectl(args.kubeconfig, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
    kubectl(args.kubeconfig, "delete", PLURAL, ALBUM, "--ignore-not-found")
    kubectl(args.kubeconfig, "delete", "events", "--field-selector", f"involvedObject.name={ALBUM}")
    storage.start()
    try:
        storage.seed([*keys, *album_keys("7", 30)])
        if isinstance(storage, StorageProcess):
            storage.fault(fail_keys={keys[17]: 1, keys[88]: 1})
        operator.start(*operator_args)
        managed: dict[str, Any] = {} if args.helm else {"managedBy": DEMO_CONTROLLER}
        cleanup = file_cleanup(
            ALBUM,
            keys=keys,
            labels={"album": "42"},
            chunkSize=25,
            backoff={"initialSeconds": 2, "maxSeconds": 10},
            **managed,
        )
        print(f"$ kubectl create  # FileCleanup {ALBUM}: {len(keys)} keys in chunks of 25")
        subprocess.run(
            ["kubectl", "--kubeconfig", str(args.kubeconfig), "create", "-f", "-"],
            input=json.dumps(cleanup),
            text=True,
            check=True,
        )
        phase = wait_until_finished(args.kubeconfig)
        left_42 = sum(storage.exists(key) for key in keys)
        left_7 = sum(storage.exists(key) for key in album_keys("7", 30))
    finally:
        operator.stop()
        storage.stop()

    print("\n$ kubectl get filecleanups -o wide")
    kubectl(args.kubeconfig, "get", "filecleanups", "-o", "wide")
    print(f"\n$ kubectl get events --field-selector involvedObject.name={ALBUM}")
    kubectl(args.kubeconfig, "get", "events", "--field-selector", f"involvedObject.name={ALBUM}")

    print(f"\nfiles left: album 42: {left_42} of {len(keys)}; album 7 (not in the request): {left_7} of 30")
    print(f"operator log: {operator.log}")
    return 0 if phase == "Succeeded" and left_42 == 0 and left_7 == 30 else 1  # noqa: PLR2004


def sample_storage(kind: str, workdir: Path) -> SampleStorage:
    match kind:
        case "s3":
            return SeaweedProcess(workdir)
        case "gcs":
            return FakeGcsProcess(workdir)
        case "azureblob":
            return AzuriteProcess(workdir)
        case "filesystem":
            return DirectoryStorage(workdir / "volume")
        case _:
            return StorageProcess(workdir)


def install_chart(
    helm: Path, kubeconfig: Path, storage_url: str, workdir: Path
) -> tuple[OperatorProcess, list[str]]:
    crd = f"{PLURAL}.{GROUP}"
    if kubectl(kubeconfig, "get", "crd", crd, "--ignore-not-found", "-o", "name", capture=True).strip():
        # Adopt a CRD that `make demo` or kubectl created, so that the release can manage it.
        kubectl(
            kubeconfig,
            "annotate",
            "--overwrite",
            "crd",
            crd,
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}",
        )
        kubectl(kubeconfig, "label", "--overwrite", "crd", crd, "app.kubernetes.io/managed-by=Helm")
    command = [
        str(helm),
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "-n",
        RELEASE_NAMESPACE,
        "--create-namespace",
    ]
    command += [
        "--set",
        "scope=namespaced",
        "--set",
        "watchNamespaces={default}",
        "--set",
        f"fullnameOverride={RELEASE}",
    ]
    command += ["--set", f"config.storages.photos.url={storage_url}"]
    command += ["--set", "config.storages.photos.policy.keyPrefix=albums/"]
    print(f"$ helm upgrade --install {RELEASE} charts/filecleanup-operator -n {RELEASE_NAMESPACE} --set ...")
    subprocess.run(command, check=True, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    config, operator_args = installed_operator(kubeconfig, RELEASE_NAMESPACE, RELEASE, workdir)
    account = service_account_kubeconfig(kubeconfig, RELEASE_NAMESPACE, RELEASE, workdir / "sa-kubeconfig")
    print(f"running the operator as ServiceAccount {RELEASE_NAMESPACE}/{RELEASE}: {' '.join(operator_args)}")
    return OperatorProcess(workdir, account, config, []), operator_args


def wait_until_finished(kubeconfig: Path) -> str:
    def finished() -> str | None:
        phase = kubectl(kubeconfig, "get", PLURAL, ALBUM, "-o", "jsonpath={.status.phase}", capture=True)
        return phase if phase in {"Succeeded", "Failed"} else None

    try:
        return eventually(f"{ALBUM} to finish", finished, timeout=WAIT_SECONDS, interval=0.5)
    except TimeoutError:
        return kubectl(kubeconfig, "get", PLURAL, ALBUM, "-o", "jsonpath={.status.phase}", capture=True)


if __name__ == "__main__":
    sys.exit(main())
