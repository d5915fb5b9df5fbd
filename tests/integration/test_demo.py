"""`make demo STORAGE=...` on every backend, against the suite's API server: the storage (a real
server or its vendor's emulator), an operator, and one FileCleanup of 120 keys that ends Succeeded,
with the other album's files left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.demo.demo import STORAGES


@pytest.mark.parametrize("storage", STORAGES)
def test_the_demo_runs_on_each_backend(crd: None, kubeconfig: Path, tmp_path: Path, storage: str) -> None:
    demo = subprocess.run(
        [
            *(sys.executable, "-m", "tools.demo.demo"),
            *("--kubeconfig", str(kubeconfig), "--workdir", str(tmp_path / "demo"), "--storage", storage),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "files left: album 42: 0 of 120; album 7 (not in the request): 30 of 30" in demo.stdout
