"""What ``filecleanup`` prints of text it did not write (an object's spec and status, the API server's and
a storage's errors, an outbox row): never a control character, so never a terminal escape sequence."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.aio.client import ApiException

from filecleanup.album import cli, cli_outbox
from filecleanup.album.client import FileCleanupClient
from filecleanup.album.outbox import Dialect, Outbox, State, create_table, enqueue
from filecleanup.album.tables import columns, printable

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# What a tenant would write: a colour, a clear screen, a window title, a clipboard write (OSC 52), a C1
# CSI, a carriage return that overwrites the line, a line feed and a tab that forge rows and columns.
HOSTILE = "\x1b[31mred\x1b[2J\x1b]0;title\x07\x1b]52;c;cm0gLXJmIH4K\x07\x9b1mx\rover\nrow\tcol\x7f"
# Characters that make escaping interesting: controls of every kind, backslashes and what follows them.
TRICKY = st.text(
    alphabet=st.one_of(
        st.sampled_from("\\x0123456789abcdef\x00\x07\x08\t\n\r\x1b\x7f\x80\x85\x9b\x9f\xa0 "),
        st.characters(codec="utf-8"),
    )
)


def unescape(text: str) -> str:
    """The reading of :func:`printable`'s output: ``\\\\`` is a backslash, ``\\xHH`` a control
    character, any other backslash itself."""
    return re.sub(
        r"\\\\|\\x([0-9a-f]{2})",
        lambda match: chr(int(match.group(1), 16)) if match.group(1) else "\\",
        text,
    )


class TestPrintable:
    @given(TRICKY)
    def test_any_text_prints_without_a_control_character(self, text: str) -> None:
        assert not CONTROL.search(printable(text))

    @given(TRICKY)
    def test_what_it_prints_reads_back_as_the_text(self, text: str) -> None:
        assert unescape(printable(text)) == text

    @given(TRICKY, TRICKY)
    def test_distinct_texts_print_distinctly(self, one: str, other: str) -> None:
        assert (printable(one) == printable(other)) == (one == other)

    @given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc"])))
    def test_text_without_control_characters_prints_as_it_is_but_for_some_backslashes(
        self, text: str
    ) -> None:
        printed = printable(text)
        assert printed == text or ("\\\\" in printed and printed.replace("\\\\", "\\") == text)
        if "\\" not in text:
            assert printed == text

    def test_escapes_are_visible(self) -> None:
        assert printable("\x1b[31mred\x9b\x7f\n") == "\\x1b[31mred\\x9b\\x7f\\x0a"
        assert printable("C:\\photos\\x.jpg") == "C:\\photos\\\\x.jpg"  # else it would read as \x.j
        assert printable("a\\b") == "a\\b"

    @given(st.lists(st.lists(TRICKY, min_size=3, max_size=3), min_size=1, max_size=5))
    def test_a_table_has_one_line_per_row_and_no_control_character(self, rows: list[list[str]]) -> None:
        table = columns(rows)
        assert len(table.split("\n")) == len(rows)
        assert not CONTROL.search(table.replace("\n", ""))


class FakeClient:
    """Answers as the API server would, with objects a tenant wrote."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)

    async def get(self, name: str, *, namespace: str = "default") -> dict[str, Any]:
        found = [obj for obj in self.list(namespace) if obj["metadata"]["name"] == name]
        if not found:
            raise ApiException(status=404, reason="Not Found")
        return found[0]

    async def list_cleanups(
        self, *, namespace: str | None = None, album_id: str | None = None
    ) -> list[dict[str, Any]]:
        assert album_id is None
        return self.list(namespace)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if namespace in {None, obj["metadata"]["namespace"]}]


def hostile_object(phase: str = "Failed") -> dict[str, Any]:
    return {
        "metadata": {"name": "album-1", "namespace": "photos", "labels": {"filecleanup.dev/album": "1"}},
        "spec": {"keys": ["albums/1/\x9b2Ja.jpg", "albums/1/b.jpg"]},
        "status": {
            "phase": phase,
            "total": 2,
            "failed": 2,
            "failedErrors": [{"error": HOSTILE, "indexes": "0-1"}],
        },
    }


def run(command: Any, client: FakeClient, **args: Any) -> int:
    import asyncio  # noqa: PLC0415

    return cast("int", asyncio.run(command(cast("FileCleanupClient", client), argparse.Namespace(**args))))


def test_failed_escapes_each_field_and_keeps_its_tab(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cli.failed, FakeClient(hostile_object()), name="album-1", namespace="photos") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"albums/1/\\x9b2Ja.jpg\t{printable(HOSTILE)}",
        f"albums/1/b.jpg\t{printable(HOSTILE)}",
    ]
    assert [line.count("\t") for line in lines] == [1, 1]
    assert not CONTROL.search("".join(lines).replace("\t", ""))


def test_failed_escapes_the_manifest_report_it_names(capsys: pytest.CaptureFixture[str]) -> None:
    obj = hostile_object()
    obj["status"]["manifest"] = {"report": "reports/\x1b]0;x\x07r"}
    run(cli.failed, FakeClient(obj), name="album-1", namespace="photos")
    assert "reports/\\x1b]0;x\\x07r" in capsys.readouterr().err


def test_the_status_table_escapes_the_phase(capsys: pytest.CaptureFixture[str]) -> None:
    run(
        cli.status,
        FakeClient(hostile_object("Failed" + HOSTILE)),
        namespace="photos",
        all_namespaces=False,
        output="table",
        album=None,
    )
    printed = capsys.readouterr().out
    assert printable("Failed" + HOSTILE) in printed
    assert len(printed.splitlines()) == 2 and not CONTROL.search(printed.replace("\n", ""))


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_json_and_yaml_escape_by_themselves_and_read_back(
    output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        cli.status,
        FakeClient(hostile_object("Failed" + HOSTILE)),
        namespace="photos",
        all_namespaces=False,
        output=output,
        show_managed_fields=False,
        album=None,
    )
    printed = capsys.readouterr().out
    assert not CONTROL.search(printed.replace("\n", ""))
    listing = json.loads(printed) if output == "json" else yaml.safe_load(printed)
    assert listing["items"][0]["status"]["phase"] == "Failed" + HOSTILE


def test_wait_escapes_a_phase_it_does_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    obj = hostile_object()
    obj["status"]["phase"] = HOSTILE
    assert run(cli.wait, FakeClient(obj), name="album-1", namespace="photos", timeout=0.0) == 2
    printed = capsys.readouterr().out
    assert printable(HOSTILE) in printed and not CONTROL.search(printed.rstrip("\n"))


@pytest.mark.parametrize(
    "error",
    [
        ValueError(f"photos/album-1 is {HOSTILE}; only a Failed FileCleanup can be retried"),
        ApiException(status=422, reason="Unprocessable Entity"),
    ],
)
def test_error_messages_are_escaped(
    error: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if isinstance(error, ApiException):
        error.body = json.dumps({"message": f"spec.keys[0]: Invalid value: {HOSTILE!s}"})

    async def failing(_: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "run", failing)
    assert cli.main(["retry", "album-1", "-n", "photos"]) == 2
    printed = capsys.readouterr().err
    assert printable(HOSTILE) in printed and not CONTROL.search(printed.rstrip("\n"))


def test_log_lines_are_escaped_and_a_traceback_keeps_its_lines() -> None:
    record = logging.LogRecord(
        "filecleanup.album.outbox", logging.WARNING, __file__, 1, "row %d: %s", (1, HOSTILE), None
    )
    assert cli.TerminalFormatter("%(message)s").format(record) == f"row 1: {printable(HOSTILE)}"

    one_line = HOSTILE.replace("\n", "")  # a traceback's lines end at line feeds, the message's included

    def fail() -> None:
        raise RuntimeError(one_line)

    try:
        fail()
    except RuntimeError:
        failing = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    formatted = cli.TerminalFormatter("%(message)s").format(failing)
    assert formatted.startswith("failed\nTraceback")
    assert formatted.endswith(f"RuntimeError: {printable(one_line)}")
    assert not CONTROL.search(formatted.replace("\n", ""))


def test_outbox_list_escapes_a_rows_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "albums.db"
    connection = sqlite3.connect(database)
    create_table(connection, Dialect.SQLITE)
    enqueue(connection, Dialect.SQLITE, "7", ["albums/7/a.jpg"], namespace="photos")
    connection.commit()
    connection.close()
    rows = Outbox(lambda: sqlite3.connect(database), Dialect.SQLITE)
    (row,) = rows.claim(1, 60)
    rows.finish(row, State.DEAD, f"conflict: {HOSTILE}")

    args = argparse.Namespace(database=f"sqlite:///{database}", action="list", state="dead")
    assert cli_outbox.outbox(args) == 0
    printed = capsys.readouterr().out
    assert printable(f"conflict: {HOSTILE}") in printed
    assert len(printed.splitlines()) == 2 and not CONTROL.search(printed.replace("\n", ""))


def test_counts_read_as_english(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj = hostile_object()
    obj["status"] = {"phase": "Failed", "total": 2, "failed": 1, "manifest": {"report": "r/"}}
    run(cli.failed, FakeClient(obj), name="album-1", namespace="photos")
    assert "album-1: 1 failed key; a manifest's failure report" in capsys.readouterr().err

    database = tmp_path / "albums.db"
    with sqlite3.connect(database) as connection:
        create_table(connection, Dialect.SQLITE)
        enqueue(connection, Dialect.SQLITE, "7", ["albums/7/a.jpg"], namespace="photos")
    rows = Outbox(lambda: sqlite3.connect(database), Dialect.SQLITE)
    (row,) = rows.claim(1, 60)
    rows.finish(row, State.DEAD, "conflict")
    args = argparse.Namespace(database=f"sqlite:///{database}", action="redrive", all=True, ids=[])
    assert cli_outbox.outbox(args) == 0
    assert capsys.readouterr().out == "redriven: 1 dead row pending again\n"
