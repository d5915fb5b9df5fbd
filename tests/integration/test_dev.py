"""`make dev` and `make dev-down`: what it prints is enough to delete an album's files by hand, it can
be run again while it runs, and `make dev-down` leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.docblocks import ROOT, marked_blocks
from tools.envtest.controlplane import ControlPlane, alive
from tools.envtest.polling import eventually


def dev(command: str, cluster_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tools.dev.dev", command, "--dir", str(cluster_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_make_dev_leaves_what_the_docs_need_running_and_dev_down_stops_it(tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    printed = dev("up", cluster_dir)
    try:
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", printed)
        root = re.search(r"the file (\S+)/K\)", printed)
        assert kubeconfig and root, printed
        env = {**os.environ, "KUBECONFIG": kubeconfig.group(1)}
        keys = [f"albums/42/photo-{i}.jpg" for i in range(3)]
        for key in keys:
            (Path(root.group(1)) / key).parent.mkdir(parents=True, exist_ok=True)
            (Path(root.group(1)) / key).write_bytes(b"photo")
        manifest = {
            "apiVersion": "filecleanup.dev/v1alpha1",
            "kind": "FileCleanup",
            "metadata": {"name": "album-42", "namespace": "default"},
            "spec": {"keys": keys},
        }
        subprocess.run(
            ["kubectl", "create", "-f", "-"], input=json.dumps(manifest), env=env, check=True, text=True
        )

        def succeeded() -> bool:
            phase = subprocess.run(
                ["kubectl", "get", "fc", "album-42", "-o", "jsonpath={.status.phase}"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return phase == "Succeeded"

        eventually("album-42 to succeed", succeeded, timeout=60)
        assert not any((Path(root.group(1)) / key).exists() for key in keys)
        again = dev("up", cluster_dir)  # running already: the same setup, nothing started twice
        assert again.partition("make dev:")[2] == printed.partition("make dev:")[2]
    finally:
        state = json.loads((cluster_dir / "dev.json").read_text())
        dev("down", cluster_dir)
    assert not alive(state["operator_pid"])
    assert not alive(state["storage_pid"])
    assert not ControlPlane(cluster_dir).is_running()
    assert not (cluster_dir / "dev.json").exists()


def test_the_readmes_try_it_block_runs_as_written(tmp_path: Path) -> None:
    """The README's `make dev` walk-through, with bash -euo pipefail from the repository root; only the
    control plane's directory is a temporary one instead of .cluster, so that a cluster of the
    developer's own is left alone."""
    (block,) = marked_blocks("try-it")
    cluster_dir = tmp_path / "cluster"
    text = block.text.replace("$PWD/.cluster", str(cluster_dir)).replace(".cluster", str(cluster_dir))
    env = {**os.environ, "CLUSTER_DIR": str(cluster_dir)}
    try:
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", text],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, f"{block.where}\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
        assert "filecleanups.filecleanup.dev/album-7 Succeeded" in ran.stdout
    finally:
        dev("down", cluster_dir)  # whatever the block reached
    assert not ControlPlane(cluster_dir).is_running()
