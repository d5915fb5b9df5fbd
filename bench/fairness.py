"""A good citizen of a shared control plane: a flood of FileCleanups created by a ServiceAccount, as an
album service's relay would after a tenant left, while another ServiceAccount, a neighbour that has
nothing to do with FileCleanups, lists pods back to back. The neighbour's latency is measured with and
without the chart's API Priority and Fairness objects (flowControl.enabled), in the same run."""

from __future__ import annotations

import concurrent.futures
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.harness import CREATE_THREADS, Bench, keys_for
from filecleanup.album.client import file_cleanup
from filecleanup.api.models import GROUP, PLURAL, VERSION
from tools.devkit.chart import service_account_kubeconfig
from tools.envtest.controlplane import OBTAIN_SCRIPT

CHART = Path(__file__).resolve().parents[1] / "charts" / "filecleanup-operator"
KEYS_PER_OBJECT = 20
SETTLE_SECONDS = 3.0  # the API server reads new flow-control objects within a second or so


def fairness(bench: Bench) -> dict[str, Any]:
    count = 500 if bench.quick else 2_000
    namespace = bench.namespace("fairness")
    flood_api = client.CustomObjectsApi(account_client(bench, namespace, "flood", FLOOD_RULES))
    neighbour_api = client.CoreV1Api(account_client(bench, namespace, "neighbour", NEIGHBOUR_RULES))
    results: dict[str, Any] = {"objects": count}
    for label, objects in (("without_apf", ""), ("with_apf", flow_control_objects())):
        if objects:
            kubectl(bench, "apply", objects)
        time.sleep(SETTLE_SECONDS)
        results[label] = flood(flood_api, neighbour_api, namespace, label, count)
        if objects:
            kubectl(bench, "delete", objects)
    without, with_apf = results["without_apf"], results["with_apf"]
    results["neighbour_p99_with_vs_without"] = with_apf["neighbour_p99_ms"] / without["neighbour_p99_ms"]
    return results


FLOOD_RULES = [client.V1PolicyRule(api_groups=[GROUP], resources=[PLURAL], verbs=["create"])]
NEIGHBOUR_RULES = [client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])]


def account_client(
    bench: Bench, namespace: str, name: str, rules: list[client.V1PolicyRule]
) -> client.ApiClient:
    """A client that is a ServiceAccount allowed ``rules`` in ``namespace``: not an administrator, whose
    requests the API server exempts from flow control."""
    core = client.CoreV1Api(bench.api)
    rbac = client.RbacAuthorizationV1Api(bench.api)
    metadata = client.V1ObjectMeta(name=name)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=metadata))
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=metadata, rules=rules))
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=metadata,
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)],
        ),
    )
    kubeconfig = service_account_kubeconfig(
        bench.plane.kubeconfig, namespace, name, bench.workdir / f"{name}.kubeconfig"
    )
    made: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return made


def kubectl(bench: Bench, verb: str, manifests: str) -> None:
    subprocess.run(
        ["kubectl", "--kubeconfig", str(bench.plane.kubeconfig), verb, "-f", "-"],
        input=manifests,
        check=True,
        capture_output=True,
        text=True,
    )


def flow_control_objects() -> str:
    """The chart's FlowSchema and PriorityLevelConfiguration, as it renders them."""
    helm = (
        subprocess.run([str(OBTAIN_SCRIPT), "helm"], check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    return subprocess.run(
        [
            *(helm, "template", "bench", str(CHART)),
            *("--set", "flowControl.enabled=true", "--show-only", "templates/flowcontrol.yaml"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def flood(
    flood_api: client.CustomObjectsApi,
    neighbour_api: client.CoreV1Api,
    namespace: str,
    label: str,
    count: int,
) -> dict[str, float]:
    """``count`` creates from CREATE_THREADS threads; the neighbour's list latencies meanwhile."""
    done = threading.Event()
    latencies: list[float] = []

    def neighbour() -> None:
        while not done.is_set():
            started = time.perf_counter()
            neighbour_api.list_namespaced_pod(namespace)
            latencies.append(time.perf_counter() - started)

    def create(n: int) -> None:
        body = file_cleanup(f"{label.replace('_', '-')}-{n}", keys=keys_for(f"{label}{n}", KEYS_PER_OBJECT))
        body["spec"]["managedBy"] = "example.com/nobody"  # no operator: the flood alone
        flood_api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    watcher = threading.Thread(target=neighbour)
    watcher.start()
    started = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(create, range(count)))
    finally:
        done.set()
        watcher.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "flood_seconds": elapsed,
        "flood_objects_per_s": count / elapsed,
        "neighbour_requests": len(ordered),
        "neighbour_p50_ms": 1000 * statistics.median(ordered),
        "neighbour_p99_ms": 1000 * ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))],
    }
