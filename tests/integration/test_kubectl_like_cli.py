"""``filecleanup`` behaves as platform engineers expect of a kubectl-like tool: the kubeconfig context's
namespace, --kubeconfig/--context, -A, -o json|yaml, --version, a wait with exit codes, errors that name
the object, and ``kubectl filecleanup`` as a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from filecleanup.api.models import API_VERSION, KIND
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.kube import Kube
from tools.devkit.storages import StorageProcess


def context_kubeconfig(kubeconfig: Path, namespace: str, directory: Path) -> Path:
    """The test cluster's kubeconfig with a second context, ``team``, whose namespace is ``namespace``."""
    document = yaml.safe_load(kubeconfig.read_text())
    current = next(c for c in document["contexts"] if c["name"] == document["current-context"])
    document["contexts"].append({"name": "team", "context": {**current["context"], "namespace": namespace}})
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def filecleanup(
    *args: str, env: dict[str, str] | None = None, program: str = ""
) -> subprocess.CompletedProcess[str]:
    argv = [program] if program else [sys.executable, "-m", "filecleanup.album.cli"]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=120, check=False, env=env or dict(os.environ)
    )


def test_the_context_namespace_output_formats_and_errors(
    crd: None, kube: Kube, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    create_cleanup(kube, namespace, "album-1", album_keys(namespace, 3))
    wait_for_phase(kube, namespace, "album-1", "Succeeded")
    config = context_kubeconfig(kubeconfig, namespace, tmp_path)

    listed = filecleanup("--kubeconfig", str(config), "--context", "team", "status")
    assert listed.returncode == 0, listed.stderr
    assert "album-1" in listed.stdout and "REDRIVES" in listed.stdout  # the context's namespace, not default

    after = filecleanup("status", "--kubeconfig", str(config), "--context", "team")  # flags after the command
    assert after.returncode == 0, after.stderr
    assert after.stdout == listed.stdout

    as_json = json.loads(
        filecleanup("--kubeconfig", str(config), "--context", "team", "status", "-o", "json").stdout
    )
    assert [item["metadata"]["name"] for item in as_json["items"]] == ["album-1"]
    as_yaml = yaml.safe_load(filecleanup("--kubeconfig", str(config), "status", "-A", "-o", "yaml").stdout)
    assert ("album-1", namespace) in {
        (item["metadata"]["name"], item["metadata"]["namespace"]) for item in as_yaml["items"]
    }

    missing = filecleanup("--kubeconfig", str(config), "--context", "team", "retry", "album-nope")
    assert missing.returncode == 2
    assert f'filecleanups.filecleanup.dev "album-nope" not found in namespace {namespace}' in missing.stderr

    unknown = filecleanup("--kubeconfig", str(config), "--context", "nowhere", "status")
    assert unknown.returncode == 4 and "context 'nowhere' not found" in unknown.stderr

    version = filecleanup("--version")
    assert version.returncode == 0 and version.stdout.startswith("filecleanup 0.")


def test_wait_exits_0_on_success_1_on_failure_2_on_timeout_3_not_found(
    crd: None, kube: Kube, kubeconfig: Path, namespace: str, storage: StorageProcess
) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    keys = album_keys(namespace, 3)
    storage.fault(fail_keys={keys[0]: -1})
    create_cleanup(kube, namespace, "fails", keys, maxRetries=0)
    create_cleanup(kube, namespace, "works", album_keys(namespace + "-ok", 3))

    assert filecleanup("wait", "works", "-n", namespace, "--timeout", "60s", env=env).returncode == 0
    failed = filecleanup("wait", "fails", "-n", namespace, "--timeout", "1m", env=env)
    assert (failed.returncode, failed.stdout.strip()) == (1, "filecleanups.filecleanup.dev/fails Failed")
    gone = filecleanup("wait", "never-created", "-n", namespace, "--timeout", "1s", env=env)
    assert gone.returncode == 3 and '"never-created" not found' in gone.stderr

    # Another installation's object: this operator leaves it alone, so it never finishes here.
    create_cleanup(kube, namespace, "never-done", album_keys(namespace, 1), managedBy="example.com/other")
    slow = filecleanup("wait", "never-done", "-n", namespace, "--timeout", "2s", env=env)
    assert slow.returncode == 2 and "still" in slow.stdout


def test_kubectl_runs_it_as_a_plugin(
    crd: None, kube: Kube, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    create_cleanup(kube, namespace, "album-7", album_keys(namespace, 2))
    wait_for_phase(kube, namespace, "album-7", "Succeeded")
    bin_directory = tmp_path / "bin"
    bin_directory.mkdir()
    plugin = bin_directory / "kubectl-filecleanup"
    # What `pip install` puts on PATH: a script of that name running the CLI.
    plugin.write_text(
        f"#!{sys.executable}\nfrom filecleanup.album.cli import main\nraise SystemExit(main())\n"
    )
    plugin.chmod(0o755)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{bin_directory}:{os.environ['PATH']}"}
    listed = subprocess.run(
        ["kubectl", "filecleanup", "status", "-n", namespace],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "album-7" in listed.stdout
    usage = subprocess.run(
        ["kubectl", "filecleanup", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert usage.stdout.startswith("usage: kubectl filecleanup")


def test_a_keys_file_that_starts_with_a_byte_order_mark_deletes_its_first_key(  # noqa: PLR0917  (fixtures)
    crd: None, kube: Kube, kubeconfig: Path, namespace: str, storage: StorageProcess, tmp_path: Path
) -> None:
    keys = album_keys(namespace, 2)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(keys).encode() + b"\r\n")  # as Notepad saves it
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    submitted = filecleanup(
        "submit", "--album", "bom", "--keys-file", str(keys_file), "-n", namespace, env=env
    )
    assert submitted.returncode == 0, submitted.stderr
    assert get_cleanup(kube, namespace, "album-bom")["spec"]["keys"] == keys
    wait_for_phase(kube, namespace, "album-bom", "Succeeded")
    assert set(keys) <= set(storage.stats()["requested"])


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31mred\rforged\nline\tcell"


def test_failed_prints_what_a_tenant_wrote_with_its_control_characters_escaped(
    crd: None, kube: Kube, kubeconfig: Path, namespace: str
) -> None:
    # Another installation's object: this operator leaves its status as written.
    create_cleanup(kube, namespace, "tenant", ["albums/1/\x9b2J.jpg"], managedBy="example.com/other")
    kube.patch_status(
        API_VERSION,
        KIND,
        "tenant",
        {"status": {"phase": "Failed", "failed": 1, "failedErrors": [{"error": HOSTILE, "indexes": "0"}]}},
        namespace=namespace,
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    listed = filecleanup("failed", "tenant", "-n", namespace, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == (
        "albums/1/\\x9b2J.jpg\t\\x1b]0;owned\\x07\\x1b[2J\\x9b31mred\\x0dforged\\x0aline\\x09cell\n"
    )
