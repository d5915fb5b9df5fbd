"""Builds a release's artifacts into a directory (dist/) from a copy of the tree stamped with its version,
leaving the tree as it was: `make release` runs it (docs/versioning.md, "Releases").

    python -m tools.release.build version [--version X.Y.Z]
    python -m tools.release.build python-chart [--version X.Y.Z] [--dist DIR] [--allow-dirty]
    python -m tools.release.build image [--version X.Y.Z] [--dist DIR] [--allow-dirty]

python-chart (no docker): the wheel and the sdist, the chart package with its Artifact Hub annotations,
a CycloneDX SBOM of the wheel's locked dependency set, and SHA256SUMS; it empties DIR's files first.
image (docker): the operator image built from the stamped copy, saved as an OCI archive, its CycloneDX
SBOM (syft, from the archive) and SHA256SUMS again, over everything in DIR.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tools.release.oci import docker_save_to_oci
from tools.release.versioning import Version, VersionError, changelog_section, changes, resolve

ROOT = Path(__file__).parents[2]
UV = ROOT / ".tools" / "uv" / "bin" / "uv"
OBTAIN = ROOT / "tools" / "envtest" / "obtain.sh"
CHART = Path("charts") / "filecleanup-operator"
PACKAGE_INIT = Path("operator") / "filecleanup" / "__init__.py"
ICON = "docs/images/filecleanup-operator.svg"
RAW_FILES = "https://raw.githubusercontent.com/filecleanup/filecleanup-operator"
SUMS = "SHA256SUMS"


def log(message: str) -> None:
    print(f"release: {message}", file=sys.stderr)


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"release: {' '.join(map(str, argv[:3]))} failed ({result.returncode}):\n{result.stderr}"
        )
    return result.stdout


def git(*args: str) -> str:
    return run("git", "-C", ROOT, *args)


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"{name}: {time.monotonic() - started:.1f} s")


def version_of(given: str) -> Version:
    try:
        return resolve(given, git("tag", "--points-at", "HEAD").split())
    except VersionError as error:
        raise SystemExit(f"release: {error}") from error


def source_date_epoch() -> str:
    """HEAD's commit time: the timestamps inside the wheel, the sdist and the SBOMs (reproducible)."""
    return git("log", "-1", "--format=%ct").strip()


def refuse_a_dirty_tree(*, allow_dirty: bool) -> None:
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    if changed and not allow_dirty:
        raise SystemExit(
            "release: the tree has uncommitted changes, which a release would carry without a commit to "
            "name them:\n" + "\n".join(changed[:10]) + "\ncommit them, or ALLOW_DIRTY=1 for a trial build"
        )


def stamp(text: str, version: Version) -> str:
    """The package's __init__.py with the release's version in place of the tree's."""
    stamped, count = re.subn(
        r'^__version__ = "[^"]*"$', f'__version__ = "{version.python}"', text, flags=re.MULTILINE
    )
    if count != 1:
        raise SystemExit(f'release: {PACKAGE_INIT} must hold one line __version__ = "..."')
    return stamped


def stamped_copy(version: Version, into: Path) -> Path:
    """The files git tracks, as they are in the work tree, copied into ``into`` and stamped."""
    for name in git("ls-files", "-z").split("\0"):
        source = ROOT / name
        if not name or not (source.exists() or source.is_symlink()):
            continue  # deleted in the work tree, not yet in a commit
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    init = into / PACKAGE_INIT
    init.write_text(stamp(init.read_text(), version))
    return into


class BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, as Chart.yaml's annotations are written by hand."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


BlockDumper.add_representer(str, _string)


def chart_metadata(chart: dict[str, Any], version: Version, changelog: str, image: str) -> dict[str, Any]:
    """Chart.yaml as the release packages it: its versions, the icon at the release's tag, and the
    Artifact Hub annotations of this release (its changes, its image, whether it is a pre-release)."""
    _, section = changelog_section(changelog, version)
    listed = changes(section)
    if not listed:
        raise SystemExit(f"release: CHANGELOG.md's section for {version.semver} lists no change")
    annotations = dict(chart.get("annotations") or {})
    annotations["artifacthub.io/changes"] = yaml.dump(
        [{"kind": change.kind, "description": change.description} for change in listed],
        Dumper=BlockDumper,
        sort_keys=False,
        width=1000,
    )
    annotations["artifacthub.io/images"] = yaml.safe_dump(
        [{"name": "filecleanup-operator", "image": f"{image}:{version.semver}"}], sort_keys=False
    )
    annotations["artifacthub.io/prerelease"] = "true" if version.prerelease else "false"
    if any(change.kind == "security" for change in listed):
        annotations["artifacthub.io/containsSecurityUpdates"] = "true"
    return {
        **chart,
        "version": version.semver,
        "appVersion": version.semver,
        "icon": f"{RAW_FILES}/{version.tag}/{ICON}",
        "annotations": annotations,
    }


def image_repository(copy: Path) -> str:
    values = yaml.safe_load((copy / CHART / "values.yaml").read_text())
    return str(values["image"]["repository"])


def obtain(tool: str) -> Path:
    return Path(run(OBTAIN, tool).strip().splitlines()[-1])


def empty(dist: Path) -> None:
    if dist.resolve() in {ROOT, *ROOT.parents}:
        raise SystemExit(f"release: --dist {dist} would empty the repository")
    dist.mkdir(parents=True, exist_ok=True)
    for path in dist.iterdir():
        if path.is_file() or path.is_symlink():
            path.unlink()


def build_python(copy: Path, dist: Path) -> tuple[Path, Path]:
    """The sdist, and the wheel built from it (so the sdist is shown to be complete)."""
    run(UV, "build", "--quiet", "--out-dir", dist, copy, env={"SOURCE_DATE_EPOCH": source_date_epoch()})
    (wheel,) = dist.glob("filecleanup_operator-*.whl")
    (sdist,) = dist.glob("filecleanup_operator-*.tar.gz")
    return wheel, sdist


def python_sbom(copy: Path, dist: Path, wheel: Path, version: Version) -> Path:
    """A CycloneDX SBOM of the environment the wheel runs in: requirements.lock's pins (by hash) and the
    wheel, installed into a fresh venv, with `uv pip check` that nothing the wheel requires is missing."""
    with tempfile.TemporaryDirectory(prefix="release-sbom-") as scratch:
        venv = Path(scratch) / "venv"
        python = venv / "bin" / "python"
        run(UV, "venv", "--quiet", "--python", sys.executable, venv)
        lock = copy / "requirements.lock"
        run(UV, "pip", "install", "--quiet", "--python", python, "--require-hashes", "--no-deps", "-r", lock)
        run(UV, "pip", "install", "--quiet", "--python", python, "--no-deps", wheel)
        run(UV, "pip", "check", "--quiet", "--python", python)
        # The root component: the project as pyproject.toml describes it, at the release's version.
        root = Path(scratch) / "pyproject.toml"
        project, count = re.subn(
            r'^dynamic = \["version"\]$',
            f'version = "{version.python}"',
            (copy / "pyproject.toml").read_text(),
            flags=re.MULTILINE,
        )
        if count != 1:
            raise SystemExit('release: pyproject.toml must hold one line dynamic = ["version"]')
        root.write_text(project)
        sbom = dist / f"filecleanup_operator-{version.python}.cdx.json"
        cyclonedx = Path(sys.executable).parent / "cyclonedx-py"
        run(
            cyclonedx, "environment", "--pyproject", root, "--output-reproducible", "-o", sbom, python,
            env={"SOURCE_DATE_EPOCH": source_date_epoch()},
        )  # fmt: skip
    return sbom


def package_chart(copy: Path, dist: Path, version: Version) -> Path:
    chart_dir = copy / CHART
    chart_file = chart_dir / "Chart.yaml"
    metadata = chart_metadata(
        yaml.safe_load(chart_file.read_text()),
        version,
        (copy / "CHANGELOG.md").read_text(),
        image_repository(copy),
    )
    chart_file.write_text(yaml.dump(metadata, Dumper=BlockDumper, sort_keys=False, width=1000))
    helm = obtain("helm")
    run(helm, "lint", "--strict", "--quiet", chart_dir)
    run(helm, "package", chart_dir, "--version", version.semver, "--app-version", version.semver, "-d", dist)
    return dist / f"filecleanup-operator-{version.semver}.tgz"


def build_image(copy: Path, dist: Path, version: Version) -> tuple[Path, Path]:
    """The image built from the stamped copy (its own tools/image/image.sh and Dockerfile), saved as an
    archive that is an OCI image layout and loads into docker (oci.py), and its SBOM: syft reads the
    archive as an OCI one (Debian's packages and the Python environment)."""
    image = f"{image_repository(copy)}:{version.semver}"
    revision = git("rev-parse", "HEAD").strip()
    run(
        copy / "tools" / "image" / "image.sh", "build", image,
        env={"FILECLEANUP_IMAGE_VERSION": version.semver, "FILECLEANUP_IMAGE_REVISION": revision},
    )  # fmt: skip
    archive = dist / f"filecleanup-operator-{version.semver}.oci.tar"
    with tempfile.TemporaryDirectory(prefix="release-image-") as scratch:
        saved = Path(scratch) / "saved.tar"
        run("docker", "save", "-o", saved, image)
        docker_save_to_oci(saved, archive, image, int(source_date_epoch()))
    sbom = dist / f"filecleanup-operator-{version.semver}.image.cdx.json"
    syft = obtain("syft")
    run(
        syft, "scan", f"oci-archive:{archive}", "--quiet", "-o", f"cyclonedx-json={sbom}",
        "--source-name", image_repository(copy), "--source-version", version.semver,
        env={"SYFT_CHECK_FOR_APP_UPDATE": "false", "SOURCE_DATE_EPOCH": source_date_epoch()},
    )  # fmt: skip
    return archive, sbom


def write_sums(dist: Path) -> Path:
    """SHA256SUMS over every file in ``dist`` (but hidden ones: uv leaves a .gitignore), in the form
    `sha256sum -c` reads."""
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
        for path in sorted(dist.iterdir())
        if path.is_file() and path.name != SUMS and not path.name.startswith(".")
    ]
    sums = dist / SUMS
    sums.write_text("".join(lines))
    return sums


def report(dist: Path) -> None:
    for path in sorted(dist.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            log(f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.release.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("part", choices=["version", "python-chart", "image"])
    parser.add_argument("--version", default="", help="X.Y.Z; empty: the vX.Y.Z tag on HEAD")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--allow-dirty", action="store_true", help="build a tree with uncommitted changes")
    args = parser.parse_args(argv)
    version = version_of(args.version)
    if args.part == "version":
        print(version.semver)
        return
    refuse_a_dirty_tree(allow_dirty=args.allow_dirty)
    dist: Path = args.dist.resolve()
    log(f"{args.part} {version.semver} (Python {version.python}) into {dist}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="release-copy-") as scratch:
        with step("stamped copy"):
            copy = stamped_copy(version, Path(scratch))
        if args.part == "python-chart":
            empty(dist)
            with step("wheel and sdist"):
                wheel, _ = build_python(copy, dist)
            with step("SBOM of the wheel's dependencies"):
                python_sbom(copy, dist, wheel, version)
            with step("chart"):
                package_chart(copy, dist, version)
        else:
            dist.mkdir(parents=True, exist_ok=True)
            with step("image, its archive and SBOM"):
                build_image(copy, dist, version)
    write_sums(dist)
    log(f"{args.part} {version.semver}: {time.monotonic() - started:.1f} s")
    report(dist)


if __name__ == "__main__":
    main()
