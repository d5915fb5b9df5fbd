"""tools/envtest/obtain.sh, the binary cache that CI jobs, tests and demos share: an artifact is built
once however many ask for it at the same time, and the cache never holds a half-built one. `pause` is
the artifact these build for real: one C file, compiled in about a second here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
OBTAIN = ROOT / "tools" / "envtest" / "obtain.sh"
AT_ONCE = 6


def gcc_shim(directory: Path, calls: Path, *, fail: bool = False) -> dict[str, str]:
    """An environment whose gcc notes each call and takes a second (so that the scripts started together
    all want to build while the first compiles), or fails; and whose cache is under `directory`."""
    real_gcc = shutil.which("gcc")
    assert real_gcc
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    compile_or_fail = "exit 1" if fail else f'exec {real_gcc} "$@"'
    (bin_dir / "gcc").write_text(f'#!/bin/sh\necho "$$" >> {calls}\nsleep 1\n{compile_or_fail}\n')
    (bin_dir / "gcc").chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FILECLEANUP_CACHE": str(directory / "cache"),
    }


def obtain_pause(env: dict[str, str], count: int) -> list[subprocess.CompletedProcess[str]]:
    argv = [str(OBTAIN), "pause"]
    started = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    finished = []
    for process in started:
        stdout, stderr = process.communicate(timeout=300)
        finished.append(subprocess.CompletedProcess(argv, process.returncode, stdout, stderr))
    return finished


def test_first_builds_at_once_make_one_build_and_print_its_path(tmp_path: Path) -> None:
    calls = tmp_path / "gcc-calls"
    results = obtain_pause(gcc_shim(tmp_path, calls), AT_ONCE)

    assert [result.returncode for result in results] == [0] * AT_ONCE, [result.stderr for result in results]
    (path,) = {result.stdout for result in results}  # the same path, alone on stdout
    pause = Path(path.rstrip("\n"))
    assert path == f"{pause}\n"
    assert len(calls.read_text().splitlines()) == 1  # one compiled it, the others waited for it
    assert sum("building pause" in result.stderr for result in results) == 1
    version = subprocess.run([str(pause), "-v"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("pause.c v1.")  # whole, not two compilers' output in one file
    cache = pause.parent.parent
    assert sorted(entry.name for entry in cache.iterdir()) == [pause.parent.name, f"{pause.parent.name}.lock"]


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    calls = tmp_path / "gcc-calls"
    env = gcc_shim(tmp_path, calls, fail=True)
    (failed,) = obtain_pause(env, 1)
    assert failed.returncode != 0
    assert failed.stdout == ""
    cache = Path(env["FILECLEANUP_CACHE"]) / "envtest"
    assert [entry.suffix for entry in cache.iterdir()] == [".lock"]  # no directory, whole or half

    (built,) = obtain_pause({**env, "PATH": os.environ["PATH"]}, 1)  # the real gcc, the lock released
    assert built.returncode == 0, built.stderr
    assert Path(built.stdout.strip()).is_file()
