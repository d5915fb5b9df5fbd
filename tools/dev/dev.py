"""``make dev``: a setup to try the operator by hand, left running on loopback: the local control plane,
the reference storage server and an operator, each on a free port, with the CRD applied, a policy
(namespace ``default``, keys under ``albums/``) and a kubeconfig. It prints what a later step needs;
``make dev-down`` stops it all.

    python -m tools.dev.dev up --dir .cluster
    python -m tools.dev.dev down --dir .cluster
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess
from tools.envtest import controlplane
from tools.envtest.controlplane import ControlPlane, stop_pid

REPOSITORY = Path(__file__).parents[2]
CRDS = REPOSITORY / "crds"
NAMESPACE = "default"
STORAGE = "photos"
POLICY = {"allowedNamespaces": [NAMESPACE], "keyPrefix": "albums/"}
STATE = "dev.json"


def up(cluster_dir: Path) -> int:
    controlplane.main(["up", "--dir", str(cluster_dir)])
    plane = ControlPlane(cluster_dir)
    workdir = plane.workdir / "dev"
    state_file = plane.workdir / STATE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if all(controlplane.alive(state[pid]) for pid in ("storage_pid", "operator_pid")):
            print(summary(plane, state))
            return 0
        down_processes(state)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(plane.kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(CRDS),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    storage = StorageProcess(workdir)
    storage.start(detached=True)
    config = {
        "defaultStorage": STORAGE,
        "storages": {STORAGE: {**storage.operator_storage(), "policy": POLICY}},
    }
    operator = OperatorProcess(workdir, plane.kubeconfig, config, [NAMESPACE])
    try:
        operator.start(detached=True)
    except RuntimeError:
        storage.stop()
        raise
    state = {
        "storage_pid": pid(storage.process),
        "operator_pid": pid(operator.process),
        "storage_url": storage.base,
        "storage_root": str(storage.root),
        "metrics_url": operator.metrics_url,
        "operator_log": str(operator.log),
        "operator_config": str(operator.config_path),
    }
    state_file.write_text(json.dumps(state, indent=2) + "\n")
    print(summary(plane, state))
    return 0


def pid(process: subprocess.Popen[bytes] | None) -> int:
    if process is None:
        raise RuntimeError("a process that was started has no PID")
    return process.pid


def summary(plane: ControlPlane, state: dict[str, str]) -> str:
    storage = f"{state['storage_url']} (the reference server: key K is the file {state['storage_root']}/K)"
    operator = f"namespace {NAMESPACE}, storage {STORAGE}, keys under {POLICY['keyPrefix']}"
    return "\n".join(
        [
            "make dev: running on loopback; `make dev-down` stops it.",
            f"  export KUBECONFIG={plane.kubeconfig}",
            f"  storage    {storage}",
            f"  operator   {operator}; log {state['operator_log']}",
            f"  metrics    {state['metrics_url']}",
            f"  config     {state['operator_config']}",
        ]
    )


def down_processes(state: dict[str, int]) -> None:
    for pid in (state["operator_pid"], state["storage_pid"]):
        stop_pid(pid)


def down(cluster_dir: Path) -> int:
    plane = ControlPlane(cluster_dir)
    state_file = plane.workdir / STATE
    if state_file.exists():
        down_processes(json.loads(state_file.read_text()))
        state_file.unlink()
        print("make dev: the operator and the storage server stopped")
    return controlplane.main(["down", "--dir", str(cluster_dir)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="state, logs and kubeconfig")
    args = parser.parse_args(argv)
    return up(args.dir) if args.command == "up" else down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
