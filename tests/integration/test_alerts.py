"""The chart's alert rules, as it renders them, checked by Prometheus's own promtool (built from its Go
module): they parse, and each one fires on the series that should make it fire, and only then."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.devkit.storages import obtained

CHART = Path(__file__).parents[2] / "charts" / "filecleanup-operator"
NAMESPACE = "filecleanup-system"
DAY = 86_400


@pytest.fixture(scope="module")
def promtool() -> str:
    return obtained("promtool")


@pytest.fixture(scope="module")
def rules_file(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rendered = subprocess.run(
        [
            *(str(helm), "template", "fc", str(CHART), "-n", NAMESPACE),
            *("--set", "metrics.enabled=true", "--set", "metrics.prometheusRule.enabled=true"),
            *("--show-only", "templates/prometheusrule.yaml"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rule = yaml.safe_load(rendered)
    path = tmp_path_factory.mktemp("alerts") / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in {"namespace": NAMESPACE, **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


# (alert, input series, when to evaluate in minutes, whether it fires then)
CASES: list[tuple[str, list[dict[str, str]], int, bool]] = [
    (
        "FileCleanupErasureDeadline",
        [series("filecleanup_oldest_unfinished_seconds", f"{26 * DAY}x5")],
        1,
        True,
    ),
    (
        "FileCleanupErasureDeadline",
        [series("filecleanup_oldest_unfinished_seconds", f"{24 * DAY}x5")],
        1,
        False,
    ),
    ("FileCleanupFailed", [series("filecleanup_objects", "1x30", phase="Failed")], 20, True),
    ("FileCleanupFailed", [series("filecleanup_objects", "1x30", phase="Failed")], 10, False),
    (
        "FileCleanupStorageUnavailable",
        [series("filecleanup_storage_available", "0x20", storage="photos")],
        15,
        True,
    ),
    ("FileCleanupApiUnreachable", [series("filecleanup_api_unreachable", "1x10")], 8, True),
    (
        "FileCleanupBackingUp",
        [
            series("filecleanup_objects", "400x40", phase="InProgress"),
            series("filecleanup_objects", "200x40", phase="Backoff"),
        ],
        35,
        True,
    ),
    ("FileCleanupBackingUp", [series("filecleanup_objects", "400x40", phase="InProgress")], 35, False),
    (
        "FileCleanupThrottled",
        [
            series("filecleanup_throttled_calls_total", "0+40x40", storage="photos"),
            series("filecleanup_delete_call_duration_seconds_count", "0+100x40", storage="photos"),
        ],
        30,
        True,
    ),
    (
        "FileCleanupThrottled",
        [
            series("filecleanup_throttled_calls_total", "0+10x40", storage="photos"),
            series("filecleanup_delete_call_duration_seconds_count", "0+100x40", storage="photos"),
        ],
        30,
        False,
    ),
    (
        "FileCleanupEtcdFootprint",
        [series("filecleanup_stored_bytes", "250000000x40", phase="Succeeded")],
        35,
        True,
    ),
    (
        "FileCleanupEtcdFootprint",
        [series("filecleanup_stored_bytes", "150000000x40", phase="Succeeded")],
        35,
        False,
    ),
]


def test_the_rules_parse(promtool: str, rules_file: Path) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = {
        rule["alert"] for group in yaml.safe_load(rules_file.read_text())["groups"] for rule in group["rules"]
    }
    assert alerts == {alert for alert, _, _, _ in CASES}  # every shipped alert has its cases


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case[0]}-{'fires' if case[3] else 'quiet'}")
def test_each_alert_fires_when_it_should_and_only_then(
    promtool: str, rules_file: Path, tmp_path: Path, case: tuple[str, list[dict[str, str]], int, bool]
) -> None:
    alert, inputs, minutes, fires = case
    expected: list[dict[str, Any]] = []
    if fires:
        labels = _labels(inputs[0]["series"])
        annotations = {
            name: text.replace("{{ $labels.storage }}", labels.get("storage", ""))
            for name, text in _rule(rules_file, alert).get("annotations", {}).items()
        }
        expected = [{"exp_labels": _expected_labels(alert, labels), "exp_annotations": annotations}]
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [{"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": expected}],
            }
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    ran = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def _rule(rules_file: Path, alert: str) -> dict[str, Any]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    rule: dict[str, Any] = next(rule for group in groups for rule in group["rules"] if rule["alert"] == alert)
    return rule


def _labels(selector: str) -> dict[str, str]:
    inside = selector.partition("{")[2].rstrip("}")
    pairs = (item.split("=", 1) for item in inside.split(","))
    return {name: value.strip('"') for name, value in pairs}


def _expected_labels(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The labels an alert carries: its own (severity), and what its expression keeps of the series."""
    severity = "critical" if alert == "FileCleanupErasureDeadline" else "warning"
    kept = {
        "FileCleanupBackingUp": {},  # a sum over every series
        "FileCleanupEtcdFootprint": {},
        "FileCleanupThrottled": {"storage": labels.get("storage", "")},  # summed by storage
    }.get(alert, labels)
    return {"severity": severity, **kept}
