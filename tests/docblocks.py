"""The documentation's tested blocks, and its links.

A block is tested when the line right before its opening fence is ``<!-- tested: NAME -->``. NAME says
which test runs it (TESTED_BY); the blocks of one name are taken from README.md first and then from
the pages of docs/ in the order of mkdocs.yml's nav, each document's in its order, so that the
README's install comes before the pages' commands that use the release it made."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# Each name a document may use, and the test that runs its blocks.
TESTED_BY = {
    "helm-quickstart": "tests/integration/test_doc_blocks.py",
    "after-helm-quickstart": "tests/integration/test_doc_blocks.py",
    "argocd-health": "tests/unit/test_gitops_health.py",
    "try-it": "tests/integration/test_dev.py",
}

MARKER = re.compile(r"^<!-- tested: (?P<name>[a-z0-9-]+) -->$", re.MULTILINE)
FENCED = re.compile(r"```(?P<language>[a-z]+)\n(?P<text>.*?)\n```", re.DOTALL)
CODE = re.compile(r"^ *```.*?^ *```", re.DOTALL | re.MULTILINE)  # any fenced block, to leave out
# [text](target): a Markdown link's target, up to a space (a title) or the closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s[^)]*)?\)")


@dataclass(frozen=True)
class Block:
    name: str
    language: str
    text: str
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def nav_pages() -> list[Path]:
    """The docs pages in mkdocs.yml's nav order, then any page the nav leaves out."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = [DOCS / next(iter(entry.values())) for entry in config["nav"]]
    return listed + sorted(set(DOCS.glob("*.md")) - set(listed))


def documents() -> list[Path]:
    return [README, *nav_pages()]


def blocks_of(path: Path) -> list[Block]:
    """Every marked block of one document; a marker not right before a fence is an error."""
    text = path.read_text()
    found = []
    for marker in MARKER.finditer(text):
        line = text.count("\n", 0, marker.start()) + 1
        fence = FENCED.match(text, marker.end() + 1)
        assert fence, f"{path.relative_to(ROOT)}:{line}: {marker[0]} must come right before a fenced block"
        found.append(Block(marker["name"], fence["language"], fence["text"], path, line))
    return found


def marked_blocks(name: str) -> list[Block]:
    """The blocks marked NAME, README.md's first, then the docs pages' in nav order."""
    assert name in TESTED_BY, f"{name} is no tested block's name"
    return [block for path in documents() for block in blocks_of(path) if block.name == name]


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks_of(path)]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MkDocs both make it, for the headings these documents use."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = CODE.sub("", path.read_text())
    return {slug(match[1]) for match in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def relative_links(path: Path) -> list[tuple[str, str]]:
    """(target file, anchor) of each link that is not a URL, outside code blocks and code spans."""
    text = re.sub(r"`[^`\n]*`", "", CODE.sub("", path.read_text()))
    links = []
    for match in LINK.finditer(text):
        target = match["target"]
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        links.append((file, anchor))
    return links
