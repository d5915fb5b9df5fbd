"""The operator's command line: help, configuration errors, JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess
from tools.envtest.controlplane import ControlPlane, obtain_binaries


def run_operator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "filecleanup", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_help_explains_the_options() -> None:
    result = run_operator("--help")
    assert result.returncode == 0
    for option in ("--config", "--namespace", "--liveness", "--log-format"):
        assert option in result.stdout


def test_invalid_configuration_stops_the_operator_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("defaultStorage: photos\nstorages:\n  photos: {type: http, url: 'not a url'}\n")
    result = run_operator("--config", str(config))
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "storages.photos.http.url" in result.stderr


def test_json_logs_carry_the_object(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    namespace = kube.create_namespace("jsonlog")
    operator = OperatorProcess(tmp_path, kubeconfig, operator_config(storage), ["jsonlog-*"])
    operator.start("--log-format", "json")
    try:
        create_cleanup(kube, namespace, "logged", album_keys(namespace, 3))
        wait_for_phase(kube, namespace, "logged", "Succeeded")
    finally:
        operator.stop()
    records = [json.loads(line) for line in operator.log_text().splitlines() if line.startswith("{")]
    assert records
    completed = [r for r in records if r.get("message", "").startswith("Completed:")]
    assert len(completed) == 1
    assert completed[0]["object"]["name"] == "logged"
    assert completed[0]["object"]["namespace"] == namespace
    assert completed[0]["storage"] == "photos"


def test_operator_without_the_crd_exits_instead_of_serving_nothing(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "bare")
    plane.start(obtain_binaries())
    try:
        config = tmp_path / "config.yaml"
        config.write_text(
            "defaultStorage: photos\nstorages:\n  photos: {type: http, url: 'http://127.0.0.1:9/delete',\n"
            "    policy: {allowedNamespaces: '*', keyPrefix: ''}}\n"
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "filecleanup",
                "--config",
                str(config),
                "--liveness",
                "off",
                "--metrics",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        )
    finally:
        plane.stop()
    assert result.returncode != 0
    assert "does not serve filecleanups.filecleanup.dev/v1alpha1; install the CRD" in result.stderr
