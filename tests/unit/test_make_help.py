"""``make help`` reads as the targets do: a variable a help text names shows its value."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def make_help(*overrides: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", "help", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_help_shows_values_not_variable_names() -> None:
    text = make_help()
    assert "$(" not in text
    assert "with each charts/filecleanup-operator/ci/*-values.yaml" in text
    assert "writes .cluster/kubeconfig" in text


def test_help_shows_a_value_given_on_the_command_line() -> None:
    assert "writes /tmp/elsewhere/kubeconfig" in make_help("CLUSTER_DIR=/tmp/elsewhere")
