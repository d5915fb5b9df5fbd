"""The `helm test` check's reading of a metrics page (the rest talks to the API server: see
tests/integration/test_chart.py)."""

from __future__ import annotations

from prometheus_client import generate_latest

from filecleanup.api.metrics import Metrics
from filecleanup.controller.selfcheck import OPERATOR_METRIC, metrics_problem


def test_the_operators_metrics_page_passes() -> None:
    assert metrics_problem(generate_latest(Metrics().registry).decode()) is None


def test_another_page_fails() -> None:
    other = "# HELP up Whether up\n# TYPE up gauge\nup 1\n"
    assert metrics_problem(other) == f"its metrics have no {OPERATOR_METRIC} sample"
    assert metrics_problem("") is not None
    # Named in a comment only is not served.
    assert metrics_problem(f"# HELP {OPERATOR_METRIC} x\n# TYPE {OPERATOR_METRIC} gauge\n") is not None
