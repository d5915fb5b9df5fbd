"""The README stays a front page, and no link in it or in docs/ points nowhere. `mkdocs build --strict`
(make lint) checks the docs pages' links and anchors too; the README is outside the site, so its links
are checked here. Every tested block's marker names a test that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docblocks import DOCS, README, ROOT, TESTED_BY, all_blocks, anchors, documents, relative_links

MAX_README_LINES = 250


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move the detail into docs/"


def test_the_readme_is_the_package_description() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'readme = "README.md"' in pyproject


@pytest.mark.parametrize("document", documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_to_what_exists(document: Path) -> None:
    problems = []
    for file, anchor in relative_links(document):
        target = (document.parent / file).resolve() if file else document
        if not target.exists():
            problems.append(f"{file}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            problems.append(f"{file}#{anchor}: no such heading in {target.relative_to(ROOT)}")
    assert not problems, f"{document.relative_to(ROOT)}: {problems}"


def test_every_docs_page_is_a_document() -> None:
    assert set(DOCS.glob("*.md")) <= set(documents())


def test_every_tested_block_names_the_test_that_runs_it() -> None:
    blocks = all_blocks()  # also: every marker comes right before a fenced block
    unknown = [f"{block.where}: {block.name}" for block in blocks if block.name not in TESTED_BY]
    assert not unknown, f"no test runs these blocks: {unknown}"
    assert {block.name for block in blocks} == set(TESTED_BY), "a tested block's name is used nowhere"
    for test in set(TESTED_BY.values()):
        assert (ROOT / test).exists(), test
