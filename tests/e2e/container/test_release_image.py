"""The release's image archive (`make release-image`): built from the stamped copy of the tree, saved as
an OCI archive that `docker load` brings back under the release's tag, labelled with its version and
commit, saying its version from inside, described by syft's SBOM, and covered by SHA256SUMS. Needs
docker, hence here (make e2e); the rest of a release is tested by tests/integration/test_release.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.release import trial_version
from tools.release.versioning import Version

ROOT = Path(__file__).parents[3]
REPOSITORY = "filecleanup/filecleanup-operator"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def built(image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Version, Path]:
    """`make release-image` into a directory of its own; ``image`` (make e2e's) is built already, so
    the build reuses its layers but the last."""
    version = trial_version()
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        ["make", "--no-print-directory", "release-image", f"VERSION={version.semver}", f"DIST={dist}"],
        cwd=ROOT,
        env={**os.environ, "ALLOW_DIRTY": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return version, dist


def test_the_archive_loads_under_the_release_tag_and_says_its_version(built: tuple[Version, Path]) -> None:
    version, dist = built
    tag = f"{REPOSITORY}:{version.semver}"
    archive = dist / f"filecleanup-operator-{version.semver}.oci.tar"
    with tarfile.open(archive) as layout:
        names = set(layout.getnames())
    assert {"oci-layout", "index.json"} <= names  # an OCI image layout (docker's manifest.json beside it)
    print(f"\n{archive.name}: {archive.stat().st_size / 1e6:.0f} MB")  # noqa: T201

    docker("rmi", tag)
    loaded = docker("load", "--input", str(archive)).stdout
    assert f"Loaded image: {tag}" in loaded
    try:
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag).stdout)
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert labels["org.opencontainers.image.version"] == version.semver
        assert labels["org.opencontainers.image.revision"] == head
        script = "import filecleanup; print(filecleanup.__version__)"
        said = docker("run", "--rm", "--network", "none", "--entrypoint", "python", tag, "-c", script)
        assert said.stdout.strip() == version.python
        assert "--leader-elect" in docker("run", "--rm", "--network", "none", tag, "--help").stdout
    finally:
        docker("rmi", tag, check=False)


def test_the_image_sbom_lists_the_locked_python_packages_and_the_base(built: tuple[Version, Path]) -> None:
    version, dist = built
    bom = json.loads((dist / f"filecleanup-operator-{version.semver}.image.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    purls = {component.get("purl", "").split("?")[0] for component in bom["components"]}
    locked = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    for name, pinned in locked:
        normal = re.sub(r"[-_.]+", "-", name).lower()
        assert f"pkg:pypi/{normal}@{pinned}" in purls, normal
    assert any(purl.startswith("pkg:deb/") for purl in purls)  # the base image's Debian packages


def test_sha256sums_cover_the_archive_and_its_sbom(built: tuple[Version, Path]) -> None:
    version, dist = built
    checked = subprocess.run(
        ["sha256sum", "--check", "--strict", "SHA256SUMS"],
        cwd=dist,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert set(checked.stdout.split()) >= {
        f"filecleanup-operator-{version.semver}.oci.tar:",
        f"filecleanup-operator-{version.semver}.image.cdx.json:",
    }
