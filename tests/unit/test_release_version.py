"""The release's version rule (docs/versioning.md): VERSION, else HEAD's vX.Y.Z tag, and a tagged HEAD
released under its tag only; its Python spelling; its CHANGELOG section as Artifact Hub's changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools.release.build import chart_metadata, stamp
from tools.release.versioning import Change, VersionError, changelog_section, changes, parse, resolve

ROOT = Path(__file__).parents[2]
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
CHART = yaml.safe_load((ROOT / "charts" / "filecleanup-operator" / "Chart.yaml").read_text())


@pytest.mark.parametrize(
    ("semver", "python"),
    [("0.2.0", "0.2.0"), ("1.10.3", "1.10.3"), ("1.0.0-rc.1", "1.0.0rc1"), ("2.1.0-alpha.0", "2.1.0a0")],
)
def test_a_version_and_its_python_spelling(semver: str, python: str) -> None:
    version = parse(semver)
    assert (version.semver, version.python, version.tag) == (semver, python, f"v{semver}")
    assert version.prerelease == ("-" in semver)


@pytest.mark.parametrize("text", ["v0.2.0", "0.2", "01.2.3", "1.2.3-rc1", "1.2.3-dev.1", "1.2.3+build.5", ""])
def test_what_is_not_a_release_version_is_refused(text: str) -> None:
    with pytest.raises(VersionError, match="not a version a release takes"):
        parse(text)


def test_the_version_is_the_given_one_or_heads_tag() -> None:
    assert resolve("0.3.0", []).semver == "0.3.0"  # untagged: taken as given
    assert resolve("", ["v0.2.0", "latest"]).semver == "0.2.0"
    assert resolve("0.2.0", ["v0.2.0"]).semver == "0.2.0"
    with pytest.raises(VersionError, match=r"HEAD is tagged v0\.2\.0"):
        resolve("0.2.1", ["v0.2.0"])
    with pytest.raises(VersionError, match=r"no vX\.Y\.Z tag"):
        resolve("", ["latest", "v0.2"])
    with pytest.raises(VersionError, match="several version tags"):
        resolve("", ["v0.2.0", "v0.2.0-rc.1"])


def test_a_release_takes_its_own_changelog_section_and_a_prerelease_may_take_unreleased() -> None:
    text = (
        "# Changelog\n\n## [Unreleased]\n\n### Fixed\n\n- soon\n\n"
        "## [0.2.0] - 2026-12-04\n\n### Added\n\n- it\n"
    )
    assert changelog_section(text, parse("0.2.0"))[0] == "## [0.2.0] - 2026-12-04"
    assert changelog_section(text, parse("0.2.0-rc.1"))[0] == "## [0.2.0] - 2026-12-04"
    assert changelog_section(text, parse("0.3.0-rc.1"))[0] == "## [Unreleased]"
    with pytest.raises(VersionError, match=r"no section for 0\.3\.0"):
        changelog_section(text, parse("0.3.0"))


def test_entries_are_one_line_each_with_their_kind() -> None:
    section = "Intro.\n\n### Added\n\n- one\n  continued\n- two\n\n### Security\n\n- three\n"
    assert changes(section) == [
        Change("added", "one continued"),
        Change("added", "two"),
        Change("security", "three"),
    ]
    with pytest.raises(VersionError, match="'### Improved' is not one of"):
        changes("### Improved\n\n- x\n")


def test_the_changelog_has_unreleased_and_every_entry_under_a_known_heading() -> None:
    assert changelog_section(CHANGELOG, parse("0.3.0-rc.1"))[0] == "## [Unreleased]"
    heading, section = changelog_section(CHANGELOG, parse("0.2.0"))
    assert heading == "## [0.2.0] - 2026-12-04"
    listed = changes(section)
    assert {change.kind for change in listed} == {"added", "changed", "fixed", "security"}
    assert all("issue" not in change.description.lower() for change in listed)  # user-facing text


def test_the_packaged_chart_names_the_release_its_image_and_its_changes() -> None:
    packaged = chart_metadata(CHART, parse("0.2.0"), CHANGELOG, "filecleanup/filecleanup-operator")
    assert (packaged["version"], packaged["appVersion"]) == ("0.2.0", "0.2.0")
    assert packaged["icon"].endswith("/v0.2.0/docs/images/filecleanup-operator.svg")
    assert (ROOT / "docs" / "images" / "filecleanup-operator.svg").is_file()
    annotations = packaged["annotations"]
    assert all(isinstance(value, str) for value in annotations.values())  # Artifact Hub takes strings
    assert yaml.safe_load(annotations["artifacthub.io/images"]) == [
        {"name": "filecleanup-operator", "image": "filecleanup/filecleanup-operator:0.2.0"}
    ]
    listed = yaml.safe_load(annotations["artifacthub.io/changes"])
    assert len(listed) == len(changes(changelog_section(CHANGELOG, parse("0.2.0"))[1]))
    assert all(set(entry) == {"kind", "description"} for entry in listed)
    assert annotations["artifacthub.io/prerelease"] == "false"
    assert annotations["artifacthub.io/crds"] == CHART["annotations"]["artifacthub.io/crds"]  # kept
    assert CHART["version"] == "0.0.0-dev"  # the tree's chart is not the release's
    assert CHART["icon"].endswith("/main/docs/images/filecleanup-operator.svg")


def test_the_stamp_replaces_the_one_version_line() -> None:
    init = (ROOT / "operator" / "filecleanup" / "__init__.py").read_text()
    stamped = stamp(init, parse("1.0.0-rc.2"))
    assert '__version__ = "1.0.0rc2"' in stamped
    assert stamped.replace('"1.0.0rc2"', '"0.0.0.dev0"') == init
