"""Where the repository's own modules are imported from: by their full names from the repository root
(tools.envtest.polling, tools.devkit.processes, bench.harness), nothing put on sys.path by PYTHONPATH or
pytest's `pythonpath`, and the dev tools, benchmarks and examples never importing the tests.
(lint-imports checks the operator package's layers; its root package is filecleanup, so these
directories are checked here.)"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
DEV_DIRS = ("tools", "bench", "examples")
CHECKED_DIRS = ("tests", *DEV_DIRS)


def sources(*directories: str) -> list[Path]:
    return sorted(path for directory in directories for path in (ROOT / directory).rglob("*.py"))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of each import executed at run time: not under TYPE_CHECKING, where
    mypy reads the examples' scripts by the names tools/devkit/examples.py loads them under."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                yield from runtime_imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        yield from runtime_imports(node)


def imports_of(*directories: str) -> Iterator[tuple[str, str]]:
    for path in sources(*directories):
        for line, module in runtime_imports(ast.parse(path.read_text(), filename=str(path))):
            yield f"{path.relative_to(ROOT)}:{line}", module


def test_tools_bench_and_examples_never_import_the_tests() -> None:
    offenders = [
        (where, module) for where, module in imports_of(*DEV_DIRS) if module.split(".")[0] == "tests"
    ]
    assert not offenders, "shared helpers belong in tools/devkit, not tests/: " + repr(offenders)


def test_own_modules_are_imported_by_their_full_names() -> None:
    """A bare `from polling import ...` works only with tools/envtest on sys.path: every module of
    tools/, bench/ and examples/ is named from the repository root (or loaded by path)."""
    bare = {path.stem for path in sources(*DEV_DIRS)} | {
        path.name for directory in DEV_DIRS for path in (ROOT / directory).rglob("*") if path.is_dir()
    }
    bare -= {"tools", "bench", "__init__", "__pycache__"}
    offenders = [
        (where, module) for where, module in imports_of(*CHECKED_DIRS) if module.split(".")[0] in bare
    ]
    assert not offenders, offenders


def test_nothing_is_put_on_the_path() -> None:
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "pythonpath" not in pytest_options
    scripts = [ROOT / "Makefile", ROOT / ".ci" / "run", *sorted((ROOT / "tools").rglob("*.sh"))]
    assert not [path for path in scripts if "PYTHONPATH" in path.read_text()]
    edits = ("sys.path.insert", "sys.path.append")  # as written by a module that edits the path
    assert not [
        path.relative_to(ROOT)
        for path in sources(*CHECKED_DIRS)
        if path != Path(__file__) and any(edit in path.read_text() for edit in edits)
    ]


def test_every_module_of_the_package_says_which_layer_it_is_in() -> None:
    """The layers are folders (lint-imports checks their imports); a reader of one module learns its
    layer from the first words of its docstring."""
    package = ROOT / "operator" / "filecleanup"
    unnamed = []
    for path in sorted(package.glob("*/*.py")):
        layer = path.parent.name
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not docstring.startswith(f"Layer {layer}."):
            unnamed.append(str(path.relative_to(ROOT)))
    assert len(list(package.glob("*/*.py"))) > 40
    assert not unnamed, "docstrings that do not start with their layer: " + repr(unnamed)
