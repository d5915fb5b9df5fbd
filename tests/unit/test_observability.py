"""What an SRE reads: the metrics' exposition and the log lines Kopf's framework would otherwise add."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from filecleanup import __version__
from filecleanup.__main__ import EXIT_BAD_SETUP, configure_logging, main, parse_args
from filecleanup.api.metrics import Metrics
from filecleanup.controller.kopf_logs import KopfLogLevels


def test_metrics_have_process_and_build_info_and_no_created_series() -> None:
    metrics = Metrics()
    metrics.keys_deleted.labels("photos").inc()
    metrics.call_seconds.labels("photos", "deleted").observe(0.1)
    text = generate_latest(metrics.registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "filecleanup_build_info"} <= names
    assert f'version="{__version__}"' in text
    assert not [name for name in names if name.endswith("_created")]


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("level", "message", "expected"),
    [
        (logging.INFO, "Handler 'count_phases' succeeded.", None),
        (logging.INFO, "Handler 'delete-keys' succeeded.", None),
        (
            logging.ERROR,
            "Handler 'delete-keys' failed temporarily: next run in 12.5 s",
            (logging.INFO, "Requeued: next run in 12.5 s"),
        ),
        (
            logging.ERROR,
            "Handler 'delete-keys' failed temporarily: (503) Service Unavailable",
            (logging.WARNING, "Handler 'delete-keys' failed temporarily: (503) Service Unavailable"),
        ),
        (logging.ERROR, "Handler 'delete-keys' failed permanently: boom", (logging.ERROR, None)),
        (logging.INFO, "Completed: deleted 3 of 3 keys", (logging.INFO, None)),
    ],
)
def test_kopf_lines_at_the_right_level(
    level: int, message: str, expected: tuple[int, str | None] | None
) -> None:
    item = record(level, message)
    kept = KopfLogLevels().filter(item)
    if expected is None:
        assert not kept
        return
    assert kept
    assert (item.levelno, item.getMessage()) == (expected[0], expected[1] or message)
    assert item.levelname == logging.getLevelName(expected[0])


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The operator's logging set up for one test, and the test process's own put back after it."""
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    handlers, level, filters, object_filters = (
        root.handlers[:],
        root.level,
        root.filters[:],
        objects.filters[:],
    )
    yield
    root.handlers[:], root.filters[:], objects.filters[:] = handlers, filters, object_filters
    root.setLevel(level)


def operator_log_line(log_format: str) -> str:
    """What the operator prints for a line about an object, as the reconciler logs one."""
    configure_logging(log_format, verbose=False)
    output = io.StringIO()
    handler = logging.getLogger().handlers[-1]  # the one Kopf's configure added
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(output)
    reference = {"apiVersion": "filecleanup.dev/v1alpha1", "kind": "FileCleanup"}
    reference |= {"namespace": "photos", "name": "album-42", "uid": "u"}
    logging.getLogger("kopf.objects").info("Completed: deleted 3 of 3 keys", extra={"k8s_ref": reference})
    return output.getvalue()


@pytest.mark.usefixtures("logging_restored")
def test_a_plain_log_line_names_its_object() -> None:
    assert "] [photos/album-42] Completed: deleted 3 of 3 keys\n" in operator_log_line("plain")


@pytest.mark.usefixtures("logging_restored")
def test_a_json_log_line_names_its_object_once() -> None:
    line = json.loads(operator_log_line("json"))
    assert (line["object"]["namespace"], line["object"]["name"]) == ("photos", "album-42")
    assert line["message"] == "Completed: deleted 3 of 3 keys"


@pytest.mark.parametrize(
    ("in_a_pod", "host"),
    [(True, "0.0.0.0"), (False, "127.0.0.1")],  # noqa: S104  (a pod's probes)
)
def test_the_probe_and_metrics_endpoints_are_loopback_outside_a_pod(
    monkeypatch: pytest.MonkeyPatch, in_a_pod: bool, host: str
) -> None:
    if in_a_pod:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    else:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    args = parse_args([])
    assert (args.liveness, args.metrics) == (f"{host}:8080", f"{host}:9090")
    chosen = parse_args(["--liveness", "off", "--metrics", "10.0.0.5:9100"])
    assert (chosen.liveness, chosen.metrics) == ("off", "10.0.0.5:9100")


def test_without_a_kubeconfig_outside_a_pod_the_operator_says_so_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "defaultStorage: photos\nstorages:\n  photos: {type: http, url: 'https://storage.test/delete', "
        "policy: {allowedNamespaces: '*', keyPrefix: ''}}\n"
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["--config", str(config)]) == EXIT_BAD_SETUP
    assert capsys.readouterr().err == (
        f"filecleanup-operator: no kubeconfig found (looked for {tmp_path / 'missing'}), and not in a pod: "
        "set KUBECONFIG\n"
    )
