"""The documentation's shell blocks, run as written (tests/docblocks.py finds them): the README's Helm
quick start, the blocks marked ``<!-- tested: helm-quickstart -->``, and then the docs pages' blocks
that act on the release and the album it made, marked ``<!-- tested: after-helm-quickstart -->``
(suspend and resume an object, pause a storage), in order, with bash -euo pipefail from the
repository root, against the local control plane.

There is no kubelet here, so the blocks stop where a pod would have to run: the release is installed,
the CRD established, the example FileCleanup accepted by the API server, and the pages' patches taken."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from filecleanup.api.models import API_VERSION, KIND
from tests.docblocks import README, ROOT, Block, marked_blocks
from tests.kube import Kube


def script(blocks: list[Block]) -> str:
    """The blocks as one script, each announced on stderr, so that a failure says whose block it was."""
    parts = [f"echo {shlex.quote('### ' + block.where)} >&2\n{block.text}" for block in blocks]
    return "\n".join(parts)


def test_the_blocks_are_shell_and_in_their_places() -> None:
    quickstart, after = marked_blocks("helm-quickstart"), marked_blocks("after-helm-quickstart")
    assert len(quickstart) >= 2
    assert {block.path for block in quickstart} == {README}, "the quick start is the README's"
    assert after, "the docs pages lost their tested commands"
    assert README not in {block.path for block in after}
    assert {block.language for block in quickstart + after} == {"sh"}


@pytest.fixture
def readme_environment(helm: Path, kubeconfig: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    token = tmp_path / "photos-token"
    token.write_text("readme-token")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PHOTOS_TOKEN_FILE": str(token)}
    yield env
    # The names are the README's: leave the cluster as the other tests expect it.
    subprocess.run([str(helm), "uninstall", "filecleanup", "-n", "filecleanup-system"], env=env, check=False)
    subprocess.run(["kubectl", "delete", "fc", "album-42", "-n", "albums"], env=env, check=False)


def test_helm_quick_start_and_the_pages_commands_run_as_written(
    kube: Kube, readme_environment: dict[str, str]
) -> None:
    blocks = marked_blocks("helm-quickstart") + marked_blocks("after-helm-quickstart")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script(blocks)],
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
    # docs/operating.md: suspended and resumed (each a change of the spec), then the storage paused.
    assert cleanup["spec"]["suspend"] is False
    assert cleanup["metadata"]["generation"] == 3
    pause = kube.get("v1", "ConfigMap", "filecleanup-pause", namespace="filecleanup-system")
    assert pause["data"]["paused"] == "photos"
