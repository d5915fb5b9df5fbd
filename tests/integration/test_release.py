"""What `make release-python-chart` builds, used as users would: the wheel installed into a fresh venv and
its commands run from there, the sdist's contents, the SBOM against the lock, SHA256SUMS verified, and
the packaged chart installed on the suite's API server. The tree is left as it was. (The image archive
is loaded by the container suite: tests/e2e/container/test_release_image.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.commands import Cli, set_flags
from tests.kube import Kube
from tests.release import trial_version
from tools.release.versioning import Version

ROOT = Path(__file__).parents[2]
UV = ROOT / ".tools" / "uv" / "bin" / "uv"
IMAGE = "filecleanup/filecleanup-operator"


def tree_status() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--ignored=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@dataclass
class Release:
    version: Version
    dist: Path
    status_before: str
    seconds: float

    def one(self, pattern: str) -> Path:
        (path,) = self.dist.glob(pattern)
        return path


@pytest.fixture(scope="module")
def release(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Release:
    version = trial_version()
    dist = tmp_path_factory.mktemp("dist")
    before = tree_status()
    started = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "release-python-chart", f"VERSION={version.semver}", f"DIST={dist}"],
        cwd=ROOT,
        env={**os.environ, "ALLOW_DIRTY": "1"},  # the tests run on work in progress too
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Release(version, dist, before, time.monotonic() - started)


def test_the_release_leaves_the_tree_as_it_was(release: Release) -> None:
    assert tree_status() == release.status_before
    assert '__version__ = "0.0.0.dev0"' in (ROOT / "operator" / "filecleanup" / "__init__.py").read_text()
    print(f"\nrelease-python-chart {release.version.semver}: {release.seconds:.1f} s")  # noqa: T201


def test_sha256sums_verify_and_cover_every_artifact(release: Release) -> None:
    checked = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"],
        cwd=release.dist,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = {line.split("  ", 1)[1] for line in (release.dist / "SHA256SUMS").read_text().splitlines()}
    artifacts = {path.name for path in release.dist.iterdir() if not path.name.startswith(".")}
    python, semver = release.version.python, release.version.semver
    assert (
        listed
        == artifacts - {"SHA256SUMS"}
        == {
            f"filecleanup_operator-{python}-py3-none-any.whl",
            f"filecleanup_operator-{python}.tar.gz",
            f"filecleanup_operator-{python}.cdx.json",
            f"filecleanup-operator-{semver}.tgz",
        }
    )


def test_the_wheel_installs_into_a_fresh_venv_and_its_commands_run(release: Release, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    subprocess.run([str(UV), "venv", "--quiet", str(venv)], check=True)
    install = [str(UV), "pip", "install", "--quiet", "--python", str(python), "--no-deps"]
    subprocess.run([*install, "--require-hashes", "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([*install, str(release.one("*.whl"))], check=True)
    subprocess.run([str(UV), "pip", "check", "--quiet", "--python", str(python)], check=True)

    # Outside the repository, with nothing of it on the path: only what the wheel installed.
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}

    def run(*argv: str) -> str:
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert (
        run(str(venv / "bin" / "filecleanup"), "--version").strip() == f"filecleanup {release.version.python}"
    )
    assert "submit" in run(str(venv / "bin" / "kubectl-filecleanup"), "--help")
    assert "--leader-elect" in run(str(python), "-m", "filecleanup", "--help")
    assert "--leader-elect" in run(str(venv / "bin" / "filecleanup-operator"), "--help")
    script = (
        "import filecleanup, importlib.metadata as m\n"
        "print(filecleanup.__version__, m.version('filecleanup-operator'), filecleanup.__file__)"
    )
    version, metadata, module = run(str(python), "-c", script).split()
    assert version == metadata == release.version.python
    assert Path(module).is_relative_to(venv)


def test_the_sdist_holds_the_package_and_its_documents_only(release: Release) -> None:
    with tarfile.open(release.one("*.tar.gz")) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    top = {name.split("/", 1)[0] for name in names}
    assert top == {
        "operator", "pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "CHANGELOG.md", "SECURITY.md",
        ".gitignore",  # hatch always adds it
    }  # fmt: skip
    assert all(name.startswith("operator/filecleanup") for name in names if name.startswith("operator"))
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_sbom_lists_exactly_the_locked_dependencies(release: Release) -> None:
    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {
        (normal(match[1]), match[2])
        for match in re.finditer(
            r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE
        )
    }
    bom = json.loads(release.one("*.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("filecleanup-operator", release.version.python)
    listed = {(normal(component["name"]), component["version"]) for component in bom["components"]}
    assert listed == locked
    assert all(component.get("purl", "").startswith("pkg:pypi/") for component in bom["components"])


@pytest.fixture(scope="module")
def cli(helm: Path, kubeconfig: Path, crd: None) -> Cli:
    return Cli(helm, kubeconfig)


def test_the_packaged_chart_installs_with_the_release_image_and_changes(
    release: Release, cli: Cli, kube: Kube
) -> None:
    chart = release.one("*.tgz")
    semver = release.version.semver
    assert chart.name == f"filecleanup-operator-{semver}.tgz"
    shown = yaml.safe_load(cli.helm("show", "chart", str(chart)).stdout)
    assert (shown["version"], shown["appVersion"]) == (semver, semver)
    assert shown["icon"].endswith(f"/v{semver}/docs/images/filecleanup-operator.svg")
    annotations = shown["annotations"]
    assert yaml.safe_load(annotations["artifacthub.io/images"])[0]["image"] == f"{IMAGE}:{semver}"
    assert {entry["kind"] for entry in yaml.safe_load(annotations["artifacthub.io/changes"])} >= {"added"}
    assert "1 chart(s) linted, 0 chart(s) failed" in cli.helm("lint", "--strict", str(chart)).stdout

    namespace = kube.create_namespace("release")
    values = {"crds.enabled": "false", "fullnameOverride": "fc"}  # the suite's CRD is already there
    try:
        cli.helm("install", "fc", str(chart), "-n", namespace, *set_flags(values))
        (listed,) = json.loads(cli.helm("list", "-n", namespace, "-o", "json").stdout)
        assert (listed["status"], listed["chart"], listed["app_version"]) == (
            "deployed",
            f"filecleanup-operator-{semver}",
            semver,
        )
        deployment = kube.get("apps/v1", "Deployment", "fc", namespace=namespace)
        labels = deployment["metadata"]["labels"]
        assert labels["app.kubernetes.io/version"] == semver
        assert labels["helm.sh/chart"] == f"filecleanup-operator-{semver}"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{IMAGE}:{semver}"
    finally:
        cli.helm("uninstall", "fc", "-n", namespace, check=False)
