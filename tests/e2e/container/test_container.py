"""The image, run exactly as the installed chart's pod spec says: it starts as UID 65532 with a read-only
root, deletes on every storage, serves its probe and metrics, stops within its grace period with every
confirmed deletion recorded, resumes after a restart, and passes the chart's `helm test` hook."""

from __future__ import annotations

import subprocess

import httpx
from prometheus_client.parser import text_string_to_metric_families

from filecleanup.api.indexes import parse_ranges
from tests.cleanups import album_keys, create_cleanup, get_cleanup, wait_for_phase
from tests.e2e.conftest import Storages
from tests.e2e.container.conftest import Release, pod_name
from tests.e2e.container.pods import RunningPod, grant_group, image_config
from tests.kube import Kube, Manifest
from tools.envtest.polling import eventually

BUILD_TOOLS = ("gcc", "cc", "c++", "make", "pip", "pip3")


def test_image_is_non_root_and_has_no_build_tools(image: str) -> None:
    assert image_config(image)["User"] == "65532:65532"  # numeric: the kubelet can check runAsNonRoot
    probe = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "sh",
            image,
            "-c",
            f"for tool in {' '.join(BUILD_TOOLS)}; do command -v $tool; done; python -c 'import pip' 2>&1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip().endswith("No module named 'pip'"), probe.stdout
    assert not any(f"/{tool}\n" in probe.stdout for tool in BUILD_TOOLS)
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    print(f"\nimage {image}: {size / 1e6:.0f} MB")  # noqa: T201


def test_the_user_has_no_passwd_entry_and_the_operator_never_asks_for_one(image: str) -> None:
    """The crash of issue 11: Kopf's fallback identity, getpass.getuser(), fails for UID 65532 here."""
    script = (
        "import getpass\n"
        "try:\n    getpass.getuser()\nexcept (KeyError, OSError) as error:\n    print('no user:', error)\n"
        "from filecleanup.__main__ import replica_identity\nprint(replica_identity())\n"
    )
    probe = subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "none", "--read-only"),
            *("-e", "POD_NAME=operator-0", "--entrypoint", "python", image, "-c", script),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    no_user, identity = probe.stdout.splitlines()
    assert no_user.startswith("no user:") and "65532" in no_user
    assert identity.startswith("operator-0_")


def test_the_image_holds_the_operator_and_no_test_or_demo_code(image: str) -> None:
    listing = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "find",
            image,
            "/opt/app",
            "-name",
            "*.py",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "/opt/app/filecleanup/run/reconciler.py" in listing
    assert all(path.startswith("/opt/app/filecleanup/") for path in listing), listing
    assert not [
        path for path in listing if any(word in path for word in ("testing", "demo", "storage_server"))
    ]


def test_the_chart_pod_deletes_on_every_storage_and_serves_metrics(
    release: Release, storages: Storages, operator_pod: RunningPod, kube: Kube
) -> None:
    namespace = kube.create_namespace("albums")
    keys = {name: album_keys(f"{namespace}/{name}", 30) for name in ("photos", "archive", "shared")}
    storages.http.seed(keys["photos"])
    storages.s3.seed(keys["archive"])
    storages.volume.seed(keys["shared"])
    # The album service's pods write the volume with the pod's fsGroup, as the kubelet set it up.
    grant_group(storages.volume.root, operator_pod.pod.spec["securityContext"]["fsGroup"])
    for name, its_keys in keys.items():
        create_cleanup(kube, namespace, f"album-{name}", its_keys, storage=name, chunkSize=7)
    for name in keys:
        status = wait_for_phase(kube, namespace, f"album-{name}", "Succeeded")["status"]
        assert (status["total"], status["deleted"], status["failed"]) == (30, 30, 0)
    assert not any(storages.http.exists(key) for key in keys["photos"])
    assert not any(storages.s3.exists(key) for key in keys["archive"])
    assert not any(storages.volume.exists(key) for key in keys["shared"])

    metrics = httpx.get(f"http://127.0.0.1:{operator_pod.pod.port('metrics')}/metrics", timeout=5).text
    deleted = {
        sample.labels["storage"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "filecleanup_keys_deleted_total"
    }
    assert deleted == {"photos": 30, "archive": 30, "shared": 30}
    user = subprocess.run(
        [
            "docker",
            "exec",
            operator_pod.pod.name,
            "python",
            "-c",
            "import os; print(os.getuid(), os.getgid())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert user == ["65532", "65532"]
    assert storages.token not in operator_pod.logs()


def test_sigterm_mid_run_records_every_confirmed_deletion_and_a_new_pod_resumes(
    release: Release, storages: Storages, kube: Kube
) -> None:
    namespace = kube.create_namespace("albums")
    keys = album_keys(namespace, 1000)
    storages.http.reset()
    storages.http.seed(keys)
    storages.http.fault(latency_seconds=0.2)
    first = RunningPod(release.pod(pod_name(release)))
    try:
        first.wait_healthy()
        create_cleanup(kube, namespace, "album-big", keys, chunkSize=10)

        def progressed() -> Manifest | None:
            found = get_cleanup(kube, namespace, "album-big")
            return found if found.get("status", {}).get("deleted", 0) > 0 else None

        eventually("a first checkpoint", progressed, interval=0.05)
        seconds, exit_code = first.stop()
    finally:
        first.remove()
    assert exit_code == 0, "a graceful stop, not a kill at the end of the grace period"
    assert seconds < first.pod.grace_seconds()
    stopped = get_cleanup(kube, namespace, "album-big")["status"]
    assert 0 < stopped["deleted"] < len(keys)
    assert stopped["deleted"] == storages.http.stats()["removed_files"]  # every confirmed deletion recorded
    confirmed = set(keys) - {keys[i] for i in parse_ranges(stopped["pendingIndexes"], len(keys))}

    second = RunningPod(release.pod(pod_name(release)))
    try:
        done = wait_for_phase(kube, namespace, "album-big", "Succeeded", timeout=90)["status"]
    finally:
        second.remove()
    assert (done["total"], done["deleted"], done["failed"]) == (1000, 1000, 0)
    requested = storages.http.stats()["requested"]
    assert all(requested[key] == 1 for key in confirmed)  # nothing confirmed was sent again
    print(f"\nSIGTERM: stopped in {seconds:.1f} s with {stopped['deleted']} of 1000 recorded")  # noqa: T201


def helm_test_pod(release: Release) -> RunningPod:
    hook = next(doc for doc in release.hooks if doc["kind"] == "Pod")
    return RunningPod(release.pod(hook["metadata"]["name"], hook["spec"]))


def test_helm_test_hook_passes_against_the_running_pod(release: Release, operator_pod: RunningPod) -> None:
    check = helm_test_pod(release)
    try:
        assert check.wait_exit(timeout=60) == 0, check.logs()
    finally:
        check.remove()


def test_helm_test_hook_fails_without_the_operator(release: Release) -> None:
    check = helm_test_pod(release)
    try:
        assert check.wait_exit(timeout=60) != 0
    finally:
        check.remove()
