"""The operator-wide pause file fails closed: a file that is there but cannot be read pauses every
storage, says why in a log line and a metric, and is read again until it can be; a missing file (a
ConfigMap without the key) pauses nothing."""

from __future__ import annotations

import errno
import logging
from pathlib import Path, PosixPath

import pytest
from prometheus_client import generate_latest

from filecleanup.api.metrics import Metrics
from filecleanup.controller.pause import PauseSwitch

STORAGES = ("photos", "videos")


class Unreadable(PosixPath):
    """A pause file whose reading fails with ``error``."""

    error: OSError

    def read_text(self, *_: object, **__: object) -> str:
        raise self.error


def unreadable(tmp_path: Path, error: OSError) -> Path:
    path = Unreadable(tmp_path / "paused")
    path.error = error
    return path


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def switch(path: Path) -> tuple[PauseSwitch, Metrics]:
    metrics = Metrics()
    pause = PauseSwitch(path, STORAGES, metrics)
    pause.read()
    return pause, metrics


def test_a_missing_file_pauses_nothing(tmp_path: Path) -> None:
    pause, metrics = switch(tmp_path / "absent")
    assert pause.paused == frozenset()
    assert 'filecleanup_paused{storage="photos"} 0.0' in exposition(metrics)
    assert "filecleanup_pause_file_unreadable{" not in exposition(metrics)


def test_a_file_pauses_what_it_names(tmp_path: Path) -> None:
    (tmp_path / "paused").write_text("photos\n")
    pause, _ = switch(tmp_path / "paused")
    assert pause.paused == {"photos"}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), "PermissionError"),
        (OSError(errno.EIO, "Input/output error"), "OSError"),
    ],
)
def test_an_unreadable_file_pauses_every_storage_and_says_why(
    tmp_path: Path, error: OSError, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="filecleanup.controller.pause"):
        pause, metrics = switch(unreadable(tmp_path, error))
    assert pause.paused == set(STORAGES)
    text = exposition(metrics)
    assert 'filecleanup_paused{storage="photos"} 1.0' in text
    assert 'filecleanup_paused{storage="videos"} 1.0' in text
    assert f'filecleanup_pause_file_unreadable{{error="{reason}"}} 1.0' in text
    assert any(
        "every storage paused" in record.getMessage() and reason in record.getMessage()
        for record in caplog.records
    )


def test_a_directory_or_a_file_that_is_not_utf8_pauses_every_storage(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    pause, metrics = switch(tmp_path / "a-directory")
    assert pause.paused == set(STORAGES)
    assert 'filecleanup_pause_file_unreadable{error="IsADirectoryError"} 1.0' in exposition(metrics)

    (tmp_path / "garbled").write_bytes(b"photos\xff\n")
    pause, metrics = switch(tmp_path / "garbled")
    assert pause.paused == set(STORAGES)
    assert 'filecleanup_pause_file_unreadable{error="UnicodeDecodeError"} 1.0' in exposition(metrics)


def test_once_readable_again_the_file_says_what_is_paused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = unreadable(tmp_path, PermissionError(errno.EACCES, "Permission denied"))
    pause, metrics = switch(path)
    assert pause.paused == set(STORAGES)
    (tmp_path / "paused").write_text("videos")
    pause._path = tmp_path / "paused"  # as the kubelet's refresh would mend it
    with caplog.at_level(logging.WARNING, logger="filecleanup.controller.pause"):
        pause.read()
    assert pause.paused == {"videos"}
    text = exposition(metrics)
    assert "filecleanup_pause_file_unreadable{" not in text
    assert 'filecleanup_paused{storage="photos"} 0.0' in text
    assert any("readable again" in record.getMessage() for record in caplog.records)


def test_an_unreadable_file_says_so_once_not_at_every_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pause, _ = switch(tmp_path / "absent")
    pause._path = unreadable(tmp_path, PermissionError(errno.EACCES, "Permission denied"))
    with caplog.at_level(logging.WARNING, logger="filecleanup.controller.pause"):
        for _ in range(3):
            pause.read()
    assert len([record for record in caplog.records if "every storage paused" in record.getMessage()]) == 1


def test_a_pause_is_a_warning_and_its_end_is_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "paused"
    path.write_text("photos")
    with caplog.at_level(logging.INFO, logger="filecleanup.controller.pause"):
        pause, _ = switch(path)
        path.write_text("")
        pause.read()
    said = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert said == [(logging.WARNING, "Paused storages: photos"), (logging.INFO, "Paused storages: none")]
