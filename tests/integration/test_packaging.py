"""What users install: the wheel holds the operator and its client, and nothing of the tests, the demo
or the reference storage server."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).parents[2]
UV = REPOSITORY / ".tools" / "uv" / "bin" / "uv"


def test_the_wheel_ships_only_the_runtime_package(tmp_path: Path) -> None:
    subprocess.run(
        [str(UV), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(REPOSITORY)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("filecleanup_operator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {name for name in names if name.endswith(".py")}
    assert "filecleanup/run/reconciler.py" in modules and "filecleanup/album/cli.py" in modules
    assert all(name.startswith("filecleanup/") for name in modules), sorted(modules)
    assert not [name for name in names if "testing" in name or "storage_server" in name or "demo" in name]
    assert "filecleanup/py.typed" in names  # a typed library for the album service's own checks
