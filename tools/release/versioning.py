"""A release's version and what is said about it: the rule that picks the version (docs/versioning.md),
its spelling for Python, and its section of CHANGELOG.md as Artifact Hub's changes. Pure: git's answers
come in as arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Semantic Versioning 2.0.0, narrowed to what every artifact can carry: a release (1.2.3) or a
# numbered alpha, beta or release candidate (1.2.3-rc.1). The Python package's version must be a
# PEP 440 one too, and an image tag cannot hold semver's "+build" metadata.
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-(alpha|beta|rc)\.(0|[1-9]\d*))?")
PEP440_PRE = {"alpha": "a", "beta": "b", "rc": "rc"}
CHANGE_KINDS = {  # Keep a Changelog's headings, and the kinds Artifact Hub's changes annotation takes
    "Added": "added",
    "Changed": "changed",
    "Deprecated": "deprecated",
    "Removed": "removed",
    "Fixed": "fixed",
    "Security": "security",
}


class VersionError(ValueError):
    """A version that cannot be released, or none given where none can be found."""


@dataclass(frozen=True)
class Version:
    semver: str  # the chart's version and appVersion, the image's tag, the git tag without its "v"

    @property
    def python(self) -> str:
        """The PEP 440 spelling of the package's version: 1.2.3, or 1.2.3rc1 for 1.2.3-rc.1."""
        match = SEMVER.fullmatch(self.semver)
        assert match is not None  # noqa: S101  (parse() made it)
        major, minor, patch, pre, number = match.groups()
        return f"{major}.{minor}.{patch}" + (f"{PEP440_PRE[pre]}{number}" if pre else "")

    @property
    def release(self) -> str:
        """The version without its pre-release part: 1.2.3 for 1.2.3-rc.1."""
        return self.semver.split("-", 1)[0]

    @property
    def prerelease(self) -> bool:
        return "-" in self.semver

    @property
    def tag(self) -> str:
        return f"v{self.semver}"


def parse(text: str) -> Version:
    if not SEMVER.fullmatch(text):
        raise VersionError(
            f"{text!r} is not a version a release takes: X.Y.Z or X.Y.Z-alpha.N, -beta.N, -rc.N "
            "(semantic versioning, without a leading v or build metadata)"
        )
    return Version(text)


def resolve(given: str, head_tags: list[str]) -> Version:
    """The release's version: ``given`` (VERSION=...), else the vX.Y.Z tag on HEAD.

    When HEAD carries vX.Y.Z tags, a given version must be one of them: a tagged commit is released
    under its tag and no other. Untagged, the given version is taken as it is (a build to try out).
    """
    tagged = [parse(tag[1:]) for tag in head_tags if tag.startswith("v") and SEMVER.fullmatch(tag[1:])]
    if given:
        version = parse(given)
        if tagged and version not in tagged:
            names = ", ".join(tag.tag for tag in tagged)
            raise VersionError(f"HEAD is tagged {names}: VERSION={given} would release it under another")
        return version
    if len(tagged) == 1:
        return tagged[0]
    if tagged:
        names = ", ".join(tag.tag for tag in tagged)
        raise VersionError(f"HEAD carries several version tags ({names}): say which, VERSION=x.y.z")
    raise VersionError("HEAD carries no vX.Y.Z tag: tag it (git tag vX.Y.Z) or give VERSION=x.y.z")


@dataclass(frozen=True)
class Change:
    kind: str  # one of CHANGE_KINDS' values
    description: str


def changelog_section(changelog: str, version: Version) -> tuple[str, str]:
    """The heading and the text of the version's section in a Keep a Changelog file.

    A release X.Y.Z needs its own section. A pre-release of X.Y.Z takes X.Y.Z's section when there
    is one (written ahead of the release), else Unreleased's.
    """
    sections: dict[str, tuple[str, str]] = {}
    for match in re.finditer(
        r"^## \[([^\]]+)\][^\n]*\n(.*?)(?=^## |^\[[^\]]+\]: |\Z)", changelog, re.MULTILINE | re.DOTALL
    ):
        sections[match[1]] = (match[0].splitlines()[0], match[2])
    candidates = [version.release, "Unreleased"] if version.prerelease else [version.release]
    for name in candidates:
        if name in sections:
            return sections[name]
    raise VersionError(
        f"CHANGELOG.md has no section for {version.semver}: add '## [{version.release}] - date'"
    )


def changes(section: str) -> list[Change]:
    """Each entry of a section, with the kind its ### heading names, as one line of text."""
    found: list[Change] = []
    kind: str | None = None
    entry: list[str] = []

    def close() -> None:
        if kind and entry:
            found.append(Change(kind, " ".join(entry)))
        entry.clear()

    for line in section.splitlines():
        if heading := re.fullmatch(r"### (\w+)\s*", line):
            close()
            if heading[1] not in CHANGE_KINDS:
                raise VersionError(
                    f"CHANGELOG.md: '### {heading[1]}' is not one of {', '.join(CHANGE_KINDS)}"
                )
            kind = CHANGE_KINDS[heading[1]]
        elif line.startswith("- "):
            close()
            entry.append(line[2:].strip())
        elif line.startswith("  ") and entry:
            entry.append(line.strip())
        elif not line.strip():
            continue
        else:
            close()
    close()
    return found
