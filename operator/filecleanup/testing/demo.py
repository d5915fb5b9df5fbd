"""``make demo``: the main job on the local control plane, end to end.

It starts the reference storage server holding two sample albums (one file answers with an error the
first time, to show a retry round), starts the operator, creates a FileCleanup for one album, waits,
and prints ``kubectl get filecleanups`` and the object's events. The control plane keeps running
(``make cluster-down`` stops it); the storage server and the operator are stopped.

    python -m filecleanup.testing.demo --kubeconfig .cluster/kubeconfig --workdir .cluster/demo
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from filecleanup.models import GROUP, PLURAL
from filecleanup.testing.processes import OperatorProcess, StorageProcess

CRD = Path(__file__).parents[3] / "crds" / "filecleanup.dev_filecleanups.yaml"
ALBUM = "album-42"
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
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # keep order with kubectl's output
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    kubectl(args.kubeconfig, "apply", "--server-side", "-f", str(CRD))
    kubectl(args.kubeconfig, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
    kubectl(args.kubeconfig, "delete", PLURAL, ALBUM, "--ignore-not-found")

    storage = StorageProcess(args.workdir)
    keys = album_keys("42", 120)
    storage.seed([*keys, *album_keys("7", 30)])
    operator = OperatorProcess(
        args.workdir,
        args.kubeconfig,
        {"defaultStorage": "photos", "storages": {"photos": {"type": "http", "url": storage.url}}},
        namespaces=["default"],
    )
    storage.start()
    try:
        storage.fault(fail_keys={keys[17]: 1, keys[88]: 1})
        operator.start()
        cleanup = {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "FileCleanup",
            "metadata": {"name": ALBUM, "labels": {"album": "42"}},
            "spec": {"keys": keys, "chunkSize": 25, "backoff": {"initialSeconds": 2, "maxSeconds": 10}},
        }
        print(f"$ kubectl create  # FileCleanup {ALBUM}: {len(keys)} keys in chunks of 25")
        subprocess.run(
            ["kubectl", "--kubeconfig", str(args.kubeconfig), "create", "-f", "-"],
            input=json.dumps(cleanup),
            text=True,
            check=True,
        )
        phase = wait_until_finished(args.kubeconfig)
    finally:
        operator.stop()
        storage.stop()

    print("\n$ kubectl get filecleanups -o wide")
    kubectl(args.kubeconfig, "get", "filecleanups", "-o", "wide")
    print(f"\n$ kubectl get events --field-selector involvedObject.name={ALBUM}")
    kubectl(args.kubeconfig, "get", "events", "--field-selector", f"involvedObject.name={ALBUM}")
    left_42 = sum(storage.exists(key) for key in keys)
    left_7 = sum(storage.exists(key) for key in album_keys("7", 30))
    print(f"\nfiles left: album 42: {left_42} of {len(keys)}; album 7 (not in the request): {left_7} of 30")
    print(f"operator log: {operator.log}")
    return 0 if phase == "Succeeded" and left_42 == 0 and left_7 == 30 else 1  # noqa: PLR2004


def wait_until_finished(kubeconfig: Path) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    phase = ""
    while time.monotonic() < deadline:
        phase = kubectl(kubeconfig, "get", PLURAL, ALBUM, "-o", "jsonpath={.status.phase}", capture=True)
        if phase in {"Succeeded", "Failed"}:
            return phase
        time.sleep(0.5)
    return phase


if __name__ == "__main__":
    sys.exit(main())
