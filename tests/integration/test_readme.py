"""The README's Helm quick start, run as written: the shell blocks marked ``<!-- tested: helm-quickstart
-->``, in order, with bash -euo pipefail from the repository root, against the local control plane.

There is no kubelet here, so the blocks stop where a pod would have to run: the release is installed,
the CRD established and the example FileCleanup accepted by the API server."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from filecleanup.api.models import API_VERSION, KIND
from tests.kube import Kube

ROOT = Path(__file__).parents[2]
MARKER = "<!-- tested: helm-quickstart -->"
BLOCK = re.compile(re.escape(MARKER) + r"\n```sh\n(.*?)\n```", re.DOTALL)


def quickstart_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    blocks = BLOCK.findall(readme)
    assert len(blocks) == readme.count(MARKER), f"every {MARKER} must come right before a ```sh fence"
    return blocks


@pytest.fixture
def readme_environment(helm: Path, kubeconfig: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    token = tmp_path / "photos-token"
    token.write_text("readme-token")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PHOTOS_TOKEN_FILE": str(token)}
    yield env
    # The names are the README's: leave the cluster as the other tests expect it.
    subprocess.run([str(helm), "uninstall", "filecleanup", "-n", "filecleanup-system"], env=env, check=False)
    subprocess.run(["kubectl", "delete", "fc", "album-42", "-n", "albums"], env=env, check=False)


def test_helm_quick_start_runs_as_written(kube: Kube, readme_environment: dict[str, str]) -> None:
    blocks = quickstart_blocks()
    assert len(blocks) >= 2
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(blocks)],
        cwd=ROOT,
        env=readme_environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "symbolic link" not in result.stderr
    assert "STATUS: deployed" in result.stdout
    secret = kube.get("v1", "Secret", "photos-storage-token", namespace="filecleanup-system")
    assert set(secret["data"]) == {"token"}
    cleanup = kube.get(API_VERSION, KIND, "album-42", namespace="albums")
    assert cleanup["spec"]["keys"] == ["albums/42/photo-001.jpg", "albums/42/photo-002.jpg"]
