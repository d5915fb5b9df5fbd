"""The version the release tests build: HEAD's vX.Y.Z tag when it has one (a release must take it),
else the newest release CHANGELOG.md has a section for."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tools.release.versioning import SEMVER, Version, parse

ROOT = Path(__file__).parents[1]


def trial_version() -> Version:
    tags = subprocess.run(
        ["git", "-C", str(ROOT), "tag", "--points-at", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split()
    tagged = [tag[1:] for tag in tags if tag.startswith("v") and SEMVER.fullmatch(tag[1:])]
    if tagged:
        return parse(tagged[0])
    newest = re.search(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert newest, "CHANGELOG.md has no release section"
    return parse(newest[1])
