"""The outbox's table is made by ``filecleanup outbox init``, once; the commands that need it say so when
it is missing, and leave no database file behind."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import cast

import pytest

from filecleanup.album import cli, cli_outbox
from filecleanup.album.client import FileCleanupClient
from filecleanup.album.outbox import OutboxMissing


def url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.mark.parametrize("action", [["list"], ["redrive", "--all"]])
def test_without_the_table_the_error_names_init_and_no_file_is_left(
    action: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "albums.db"
    assert cli.main(["outbox", *action, "--database", url(database)]) == 4
    assert capsys.readouterr().err == (
        f"error: {url(database)} has no outbox table (filecleanup_outbox): make it with filecleanup outbox "
        f"init --database {url(database)}\n"
    )
    assert not database.exists()


def test_init_makes_the_table_once_and_again_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = url(tmp_path / "albums.db")
    for _ in range(2):
        assert cli.main(["outbox", "init", "--database", database]) == 0
        assert capsys.readouterr().out == f"outbox table filecleanup_outbox ready in {database}\n"
    assert cli.main(["outbox", "list", "--database", database]) == 0
    assert capsys.readouterr().out.startswith("ID   ALBUM   NAMESPACE   STATE")


def test_a_database_file_without_the_table_is_no_outbox(tmp_path: Path) -> None:
    database = tmp_path / "albums.db"
    database.touch()  # an empty SQLite database, as a mistyped path once left
    with pytest.raises(OutboxMissing, match="filecleanup outbox init"):
        cli_outbox.opened(url(database))


def test_the_relay_needs_the_table_too(tmp_path: Path) -> None:
    args = argparse.Namespace(database=url(tmp_path / "albums.db"), poll_seconds=1.0, retention_days=7.0)
    with pytest.raises(OutboxMissing, match="filecleanup outbox init"):
        asyncio.run(cli_outbox.relay(cast("FileCleanupClient", None), args))
    assert not (tmp_path / "albums.db").exists()
