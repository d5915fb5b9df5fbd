"""``filecleanup`` keeps the conventions of a kubectl-like tool, so that scripts and people who know
kubectl are not surprised."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio.client import ApiException
from kubernetes.aio.config import ConfigException

from filecleanup.album import cli
from tests.unit.test_cli import FakeClient, hostile_object, run


def parsed(*argv: str) -> dict[str, Any]:
    return vars(cli.parser().parse_args(argv))


class TestGlobalFlags:
    @pytest.mark.parametrize(
        "argv",
        [
            ["--kubeconfig", "k", "--context", "c", "status"],
            ["status", "--kubeconfig", "k", "--context", "c"],
            ["--kubeconfig", "k", "status", "--context", "c"],
            ["wait", "album-1", "--context", "c", "--kubeconfig", "k"],
            [
                "receipt",
                "show",
                "album-1",
                "--storage-config",
                "o.yaml",
                "--context",
                "c",
                "--kubeconfig",
                "k",
            ],
            ["relay", "--database", "sqlite:///a.db", "--context", "c", "--kubeconfig", "k"],
        ],
    )
    def test_before_or_after_the_command(self, argv: list[str]) -> None:
        args = parsed(*argv)
        assert (args["kubeconfig"], args["context"]) == ("k", "c")

    def test_unset_they_are_none_and_after_the_command_wins(self) -> None:
        assert (parsed("status")["kubeconfig"], parsed("status")["context"]) == (None, None)
        assert parsed("--context", "before", "status", "--context", "after")["context"] == "after"


def failed_with(phase: str) -> FakeClient:
    obj = hostile_object()
    obj["status"]["phase"] = phase
    return FakeClient(obj)


class TestWaitExitCodes:
    def test_done_failed_timed_out_and_not_found(self, capsys: pytest.CaptureFixture[str]) -> None:
        wait: dict[str, Any] = {"name": "album-1", "namespace": "photos", "timeout": 0.0}
        assert run(cli.wait, failed_with("Succeeded"), **wait) == 0
        assert run(cli.wait, failed_with("Checked"), **wait) == 0  # a dry run that is done
        assert run(cli.wait, failed_with("Failed"), **wait) == 1
        assert run(cli.wait, failed_with("InProgress"), **wait) == 2
        assert run(cli.wait, failed_with("Succeeded"), **{**wait, "name": "album-nope"}) == 3
        assert 'filecleanups.filecleanup.dev "album-nope" not found in namespace photos' in (
            capsys.readouterr().err
        )

    def test_a_usage_error_is_4(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            cli.main(["wait"])
        assert exited.value.code == 4
        assert "the following arguments are required: name" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("command", "error", "code"),
        [
            ("wait", ConfigException("context 'x' not found in the kubeconfig"), 4),
            ("status", ConfigException("context 'x' not found in the kubeconfig"), 4),
            ("wait", ApiException(status=403, reason="Forbidden"), 4),
            ("retry", ApiException(status=403, reason="Forbidden"), 2),
        ],
    )
    def test_a_configuration_error_is_4_and_wait_has_no_2_but_its_timeout(
        self, command: str, error: Exception, code: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def failing(_: object) -> int:
            raise error

        monkeypatch.setattr(cli, "run", failing)
        argv = [command] if command == "status" else [command, "album-1"]
        assert cli.main(argv) == code


def test_without_any_kubeconfig_the_error_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cli.main(["status"]) == 4
    assert capsys.readouterr().err == (
        "error: no kubeconfig found (looked for ~/.kube/config), and not in a pod: set KUBECONFIG or give "
        "--kubeconfig\n"
    )


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_managed_fields_only_when_asked(output: str, capsys: pytest.CaptureFixture[str]) -> None:
    obj = hostile_object()
    obj["metadata"]["managedFields"] = [{"manager": "filecleanup-operator", "operation": "Update"}]
    status: dict[str, Any] = {"namespace": "photos", "all_namespaces": False, "output": output, "album": None}
    for show, expected in ((False, False), (True, True)):
        run(cli.status, FakeClient(obj), **status, show_managed_fields=show)
        printed = capsys.readouterr().out
        assert ("managedFields" in printed) is expected
        assert "filecleanup.dev/album" in printed  # the rest of the metadata stays
    assert "managedFields" in obj["metadata"]  # the object itself is left as it was


def cli_process(body: str) -> subprocess.Popen[str]:
    """``filecleanup status`` in a process of its own, its command replaced by ``body`` (a coroutine's
    body, given ``args``)."""
    script = "\n".join(
        [
            "import asyncio, logging, sys",
            "from filecleanup.album import cli",
            "async def command(args):",
            textwrap.indent(textwrap.dedent(body), "    "),
            "cli.run = command",
            "sys.exit(cli.main(['status']))",
        ]
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": ""},  # buffered, as in a pipeline, whatever the caller set
    )


def test_a_reader_that_goes_away_ends_it_quietly_with_0() -> None:
    printing = cli_process(
        """
        for item in range(1_000_000):
            print(f"line {item}")
        return 0
        """
    )
    assert printing.stdout is not None
    assert printing.stdout.readline() == "line 0\n"
    printing.stdout.close()  # as `| head -1` does
    assert printing.wait(timeout=60) == 0
    assert printing.stderr is not None
    assert printing.stderr.read() == ""


def test_a_reader_gone_after_the_command_finished_keeps_its_exit_code() -> None:
    finished = cli_process(
        """
        print("filecleanups.filecleanup.dev/album-1 Failed")  # buffered: flushed once it returns
        sys.stdin.read()  # until the reader has gone
        return 1
        """
    )
    assert finished.stdout is not None and finished.stdin is not None and finished.stderr is not None
    finished.stdout.close()
    finished.stdin.close()
    assert finished.wait(timeout=60) == 1
    assert finished.stderr.read() == ""


def test_no_library_info_lines_but_warnings_and_the_clis_own() -> None:
    logging_ = cli_process(
        """
        logging.getLogger("httpx").info('HTTP Request: PUT http://storage/a "HTTP/1.1 200 OK"')
        logging.getLogger("httpx").warning("a library's warning")
        logging.getLogger("filecleanup.album.outbox").info("the relay's own line")
        print("album 42: 3 keys in 1 FileCleanup: album-42")
        return 0
        """
    )
    out, err = logging_.communicate(timeout=60)
    assert logging_.returncode == 0
    assert out == "album 42: 3 keys in 1 FileCleanup: album-42\n"
    assert "HTTP Request" not in err
    assert "a library's warning" in err and "the relay's own line" in err
