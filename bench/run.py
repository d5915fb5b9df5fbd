"""``make bench``: throughput, API cost, burst, latency and memory of the operator, each against a
baseline measured in the same run (absolute times on a shared machine vary; ratios travel).

It starts its own control plane (with an audit log, to count the operator's writes), the reference
storage server at 20 ms per call, and the operator; prints a table and writes JSON.

    python bench/run.py [--json bench/results/latest.json] [--quick]

Benchmarks are not tests: they report, they never fail the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import httpx
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from controlplane import ApiServerOptions, ControlPlane, obtain_binaries
from filecleanup.config import HttpStorageConfig
from filecleanup.metrics import Metrics
from filecleanup.models import GROUP, PLURAL, VERSION
from filecleanup.storage.base import ConcurrencyLimited
from filecleanup.storage.http import HttpStorage
from polling import eventually
from tests.support.processes import OperatorProcess
from tests.support.storages import OPEN_POLICY, StorageProcess

REPOSITORY = Path(__file__).resolve().parents[1]
CRD = REPOSITORY / "crds" / "filecleanup.dev_filecleanups.yaml"
LATENCY = 0.020
MAX_CONCURRENT_REQUESTS = 8
CHUNK = 100
CREATE_THREADS = 16
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [
                {"group": GROUP, "resources": ["filecleanups", "filecleanups/status"]},
                {"group": "", "resources": ["events"]},
            ],
        },
        {"level": "None"},
    ],
}


def keys_for(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/albums/{i // 1000:03d}/photo-{i:06d}-" + "x" * 60 + ".jpg" for i in range(count)]


class Bench:
    def __init__(self, workdir: Path, *, quick: bool) -> None:
        self.workdir = workdir
        self.quick = quick
        self.audit_log = workdir / "audit.log"
        policy = workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        audit = (
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-maxsize=0",
        )
        self.plane = ControlPlane(workdir / "plane", ApiServerOptions(extra_flags=audit))
        self.plane.start(obtain_binaries())
        self.api = config.new_client_from_config(config_file=str(self.plane.kubeconfig))  # type: ignore[no-untyped-call]
        self.objects = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        extensions = client.ApiextensionsV1Api(self.api)
        extensions.create_custom_resource_definition(yaml.safe_load(CRD.read_text()))
        eventually("CRD established", lambda: self._established(extensions), timeout=30)
        self.storage = StorageProcess(workdir / "storage")
        self.storage.start()
        self.storage_config = {
            **self.storage.operator_storage(),
            "maxConcurrentRequests": MAX_CONCURRENT_REQUESTS,
            "readTimeoutSeconds": 30,
        }

    def close(self) -> None:
        self.storage.stop()
        self.api.close()
        self.plane.stop()

    @staticmethod
    def _established(extensions: client.ApiextensionsV1Api) -> bool:
        crd = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    def operator(self, name: str, namespaces: list[str], *, in_flight_per_object: int = 4) -> OperatorProcess:
        workdir = self.workdir / name
        workdir.mkdir()
        operator_config = {
            "defaultStorage": "photos",
            "chunksInFlightPerObject": in_flight_per_object,
            "storages": {"photos": self.storage_config},
        }
        return OperatorProcess(workdir, self.plane.kubeconfig, operator_config, namespaces)

    def namespace(self, name: str) -> str:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def create(self, namespace: str, name: str, keys: list[str], **extra: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FileCleanup",
            "metadata": {"name": name, **extra.pop("metadata", {})},
            "spec": {"keys": keys, **extra},
        }
        self.objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def create_many(self, namespace: str, bodies: Iterable[tuple[str, list[str]]]) -> None:
        with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(lambda item: self.create(namespace, item[0], item[1]), bodies))

    def phases(self, namespace: str) -> list[str]:
        listed = cast(
            "dict[str, Any]", self.objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        )
        return [(item.get("status") or {}).get("phase", "") for item in listed["items"]]

    def wait_succeeded(self, operator: OperatorProcess, count: int, timeout: float) -> None:
        """Until the operator has seen ``count`` objects Succeeded. Its metrics tell, at almost no cost:
        listing big objects again and again would load the API server the benchmark measures."""

        def done() -> bool:
            try:
                samples = httpx.get(operator.metrics_url, timeout=10).text.splitlines()
            except httpx.TransportError:  # not serving yet
                return False
            return f'filecleanup_objects{{phase="Succeeded"}} {float(count)}' in samples

        eventually(f"{count} objects to succeed", done, timeout=timeout, interval=0.2)

    def window(self, namespace: str) -> tuple[float, float]:
        """The earliest startTime and the latest completionTime in ``namespace``, as Unix times."""
        listed = cast(
            "dict[str, Any]", self.objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        )
        statuses = [item["status"] for item in listed["items"]]

        def unix(value: str) -> float:
            return datetime.datetime.fromisoformat(value).timestamp()

        return min(unix(s["startTime"]) for s in statuses), max(unix(s["completionTime"]) for s in statuses)

    def last_completion(self, namespace: str) -> float:
        return self.window(namespace)[1]

    def audit_lines(self) -> int:
        return len(self.audit_log.read_text().splitlines())

    def writes(self, namespace: str, since_line: int = 0) -> dict[str, int]:
        """The operator's writes in ``namespace`` according to the audit log (creates by the bench are
        not the operator's)."""
        counted = {"object": 0, "status": 0, "events": 0}
        for line in self.audit_log.read_text().splitlines()[since_line:]:
            entry = json.loads(line)
            ref = entry.get("objectRef", {})
            if ref.get("namespace") != namespace or entry.get("stage") != "ResponseComplete":
                continue
            if ref.get("resource") == "events":
                counted["events"] += entry["verb"] == "create"
            elif entry["verb"] != "create":
                counted["status" if ref.get("subresource") == "status" else "object"] += 1
        return counted


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(pid)


async def direct_seconds(url: str, keys: list[str], *, concurrent: bool) -> float:
    """The storage's own limit: the operator's client code calling it with the same concurrency, or one
    chunk after the other as in the sequential loop."""
    storage_config = HttpStorageConfig.model_validate({"type": "http", "url": url, "policy": OPEN_POLICY})
    storage = ConcurrencyLimited(HttpStorage("photos", storage_config), MAX_CONCURRENT_REQUESTS, Metrics())
    chunks = [keys[at : at + CHUNK] for at in range(0, len(keys), CHUNK)]
    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(storage.delete(chunk) for chunk in chunks))
    else:
        for chunk in chunks:
            await storage.delete(chunk)
    elapsed = time.perf_counter() - started
    await storage.aclose()
    return elapsed


def throughput(bench: Bench) -> dict[str, Any]:
    objects, per_object = (4, 5_000) if bench.quick else (10, 10_000)
    total = objects * per_object
    bench.storage.fault(latency_seconds=LATENCY)
    direct = asyncio.run(direct_seconds(bench.storage.url, keys_for("direct", total), concurrent=True))
    subset = keys_for("sequential", 10_000)
    sequential = (
        asyncio.run(direct_seconds(bench.storage.url, subset, concurrent=False)) * total / len(subset)
    )

    def albums(prefix: str) -> list[tuple[str, list[str]]]:
        return [(f"album-{n}", keys_for(f"{prefix}{n}", per_object)) for n in range(objects)]

    # The API server's own share: accepting 10 MB of keys, with no operator running.
    started = time.perf_counter()
    bench.create_many(bench.namespace("throughput-create-only"), albums("c"))
    creation_only = time.perf_counter() - started

    # Create to the last Succeeded, the operator running all along.
    namespace = bench.namespace("throughput")
    operator = bench.operator("throughput", [namespace])
    operator.start()
    try:
        started_wall = time.time()
        bench.create_many(namespace, albums("t"))
        bench.wait_succeeded(operator, objects, timeout=300)
        end_to_end = bench.last_completion(namespace) - started_wall
    finally:
        operator.stop()

    # A backlog: the objects exist before the operator starts (after an outage, say); from the first
    # object it starts to the last Succeeded, the operator's work alone.
    namespace = bench.namespace("throughput-backlog")
    bench.create_many(namespace, albums("k"))
    operator = bench.operator("throughput-backlog", [namespace])
    operator.start()
    try:
        bench.wait_succeeded(operator, objects, timeout=300)
        first_start, last_completion = bench.window(namespace)
    finally:
        operator.stop()
    backlog = last_completion - first_start
    return {
        "keys": total,
        "direct_keys_per_s": total / direct,
        "design_note_keys_per_s": total / sequential,
        "operator_keys_per_s": total / end_to_end,
        "operator_vs_direct": direct / end_to_end,
        "operator_vs_loop": sequential / end_to_end,
        "creation_only_s": creation_only,
        "backlog_keys_per_s": total / backlog,
        "backlog_vs_direct": direct / backlog,
        "backlog_vs_loop": sequential / backlog,
    }


def api_cost(bench: Bench) -> dict[str, Any]:
    bench.storage.fault(latency_seconds=LATENCY)
    rows: dict[str, dict[str, float]] = {}
    namespace_operator = bench.operator("api-cost", ["cost-*"])
    namespace_operator.start()
    try:
        for size in (100, 1_000, 10_000):
            namespace = bench.namespace(f"cost-{size}")
            started = time.time()
            bench.create(namespace, "album", keys_for(f"c{size}", size))
            bench.wait_succeeded(namespace_operator, len(rows) + 1, timeout=120)
            elapsed = bench.last_completion(namespace) - started
            time.sleep(1.5)  # Kopf's last writes after the handler finished
            writes = bench.writes(namespace)
            rows[str(size)] = {
                "seconds": elapsed,
                **writes,
                "writes": sum(writes.values()),
                "writes_per_second_of_run": sum(writes.values()) / elapsed,
            }
    finally:
        namespace_operator.stop()
    return rows


def burst(bench: Bench) -> dict[str, Any]:
    count = 200 if bench.quick else 1_000
    bench.storage.fault(latency_seconds=LATENCY)
    baseline_namespace = bench.namespace("burst-baseline")
    started = time.perf_counter()
    bench.create_many(baseline_namespace, [(f"album-{n}", keys_for(f"bb{n}", 20)) for n in range(count)])
    creation_only = time.perf_counter() - started

    namespace = bench.namespace("burst")
    operator = bench.operator("burst", [namespace])
    operator.start()
    assert operator.process is not None
    try:
        time.sleep(1)
        cpu_before = cpu_seconds(operator.process.pid)
        started = time.time()
        bench.create_many(namespace, [(f"album-{n}", keys_for(f"b{n}", 20)) for n in range(count)])
        bench.wait_succeeded(operator, count, timeout=600)
        elapsed = bench.last_completion(namespace) - started
        cpu = cpu_seconds(operator.process.pid) - cpu_before
    finally:
        operator.stop()
    return {
        "objects": count,
        "seconds_to_all_succeeded": elapsed,
        "operator_cpu_seconds": cpu,
        "creation_only_seconds": creation_only,
        "vs_creation_only": elapsed / creation_only,
    }


def latency(bench: Bench) -> dict[str, Any]:
    count = 30 if bench.quick else 100
    bench.storage.fault()
    bench.storage.reset()
    namespace = bench.namespace("latency")
    operator = bench.operator("latency", [namespace])
    operator.start()
    created_at: dict[str, float] = {}
    round_trips = []
    try:
        time.sleep(1)  # idle
        for n in range(count):
            key = f"latency/{n}.jpg"
            before = time.time()
            bench.create(namespace, f"album-{n}", [key])
            round_trips.append(time.time() - before)
            created_at[key] = before

            def created_succeeded(expected: int = n + 1) -> bool:
                return bench.phases(namespace).count("Succeeded") == expected

            eventually("latency object", created_succeeded, timeout=30, interval=0.01)
    finally:
        operator.stop()
    first_call = httpx.get(f"{bench.storage.base}/_admin/stats", timeout=30).json()["first_requested_at"]
    delays = sorted(first_call[key] - created for key, created in created_at.items())
    p50 = statistics.median(delays)
    p99 = delays[min(len(delays) - 1, round(0.99 * len(delays)))]
    rtt = statistics.median(round_trips)
    return {
        "objects": count,
        "p50_s": p50,
        "p99_s": p99,
        "create_round_trip_s": rtt,
        "p50_vs_create_round_trip": p50 / rtt,
    }


def memory(bench: Bench) -> dict[str, Any]:
    count = 2_000 if bench.quick else 10_000
    baseline = subprocess.Popen(
        [sys.executable, "-c", "import filecleanup.handlers, filecleanup.__main__, time; time.sleep(60)"]
    )
    time.sleep(4)
    baseline_mb = rss_mb(baseline.pid)
    baseline.kill()
    baseline.wait()

    namespace = bench.namespace("memory")
    idle = bench.operator("memory-idle", [namespace])
    idle.start()
    assert idle.process is not None
    time.sleep(3)
    idle_mb = rss_mb(idle.process.pid)
    idle.stop()

    # What a previous run of the operator would have left: finished objects with Kopf's diff-base.
    bench.create(namespace, "template", ["m/template.jpg"])
    operator = bench.operator("memory-template", [namespace])
    operator.start()
    try:
        bench.wait_succeeded(operator, 1, timeout=60)
        time.sleep(1)
    finally:
        operator.stop()
    template = cast(
        "dict[str, Any]",
        bench.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "template"),
    )
    annotations = template["metadata"]["annotations"]
    status = {k: v for k, v in template["status"].items() if k != "kopf"}

    def finished(n: int) -> None:
        name = f"album-{n}"
        bench.create(namespace, name, [f"m/{n}.jpg"], metadata={"annotations": annotations})
        bench.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(finished, range(1, count)))

    loaded = bench.operator("memory-loaded", [namespace])
    before_restart = bench.audit_lines()
    loaded.start()
    assert loaded.process is not None
    try:

        def all_seen() -> bool:
            text = httpx.get(loaded.metrics_url, timeout=10).text
            return f'filecleanup_objects{{phase="Succeeded"}} {float(count)}' in text

        eventually("the operator to list every finished object", all_seen, timeout=300, interval=0.5)
        time.sleep(2)
        loaded_mb = rss_mb(loaded.process.pid)
        writes = bench.writes(namespace, since_line=before_restart)
    finally:
        loaded.stop()
    return {
        "finished_objects": count,
        "idle_rss_mb": idle_mb,
        "rss_mb_with_finished_objects": loaded_mb,
        "imports_only_rss_mb": baseline_mb,
        "idle_vs_imports_only": idle_mb / baseline_mb,
        "writes_on_restart_with_finished_objects": sum(writes.values()),
    }


def table(results: dict[str, Any]) -> str:
    t, cost, b, lat, mem = (results[k] for k in ("throughput", "api_cost", "burst", "latency", "memory"))
    rows = [
        ("a", "throughput, direct (storage limit)", f"{t['direct_keys_per_s']:,.0f} keys/s", "baseline"),
        ("a", "throughput, design-note loop", f"{t['design_note_keys_per_s']:,.0f} keys/s", "baseline"),
        (
            "a",
            f"throughput, operator ({t['keys']:,} keys)",
            f"{t['operator_keys_per_s']:,.0f} keys/s",
            (
                f"{t['operator_vs_direct']:.2f}x direct, {t['operator_vs_loop']:.1f}x sequential loop "
                f"(creating the objects alone: {t['creation_only_s']:.1f} s)"
            ),
        ),
        (
            "a",
            "throughput, operator on a backlog (objects already there)",
            f"{t['backlog_keys_per_s']:,.0f} keys/s",
            f"{t['backlog_vs_direct']:.2f}x direct, {t['backlog_vs_loop']:.1f}x sequential loop",
        ),
    ]
    for size, row in cost.items():
        rows.append(
            (
                "b",
                f"API writes, {int(size):,} keys",
                f"{row['writes']} ({row['object']} object, {row['status']} status, {row['events']} events)",
                f"{row['seconds']:.1f} s run, {row['writes_per_second_of_run']:.1f} writes/s",
            )
        )
    rows += [
        (
            "c",
            f"burst, {b['objects']:,} objects x 20 keys",
            f"{b['seconds_to_all_succeeded']:.1f} s, {b['operator_cpu_seconds']:.1f} CPU s",
            f"{b['vs_creation_only']:.2f}x creating them alone ({b['creation_only_seconds']:.1f} s)",
        ),
        (
            "d",
            f"create to first delete call ({lat['objects']} objects)",
            f"p50 {lat['p50_s'] * 1000:.0f} ms, p99 {lat['p99_s'] * 1000:.0f} ms",
            (
                f"p50 = {lat['p50_vs_create_round_trip']:.1f}x a create round trip "
                f"({lat['create_round_trip_s'] * 1000:.0f} ms)"
            ),
        ),
        (
            "e",
            "operator RSS, idle",
            f"{mem['idle_rss_mb']:.0f} MB",
            f"{mem['idle_vs_imports_only']:.2f}x its imports alone ({mem['imports_only_rss_mb']:.0f} MB)",
        ),
        (
            "e",
            f"operator RSS, {mem['finished_objects']:,} finished objects",
            f"{mem['rss_mb_with_finished_objects']:.0f} MB",
            f"{mem['writes_on_restart_with_finished_objects']} writes on restart",
        ),
    ]
    lines = ["| # | what | measured | ratio / context |", "|---|---|---|---|"]
    lines += [f"| {a} | {b_} | {c} | {d} |" for a, b_, c, d in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=REPOSITORY / "bench" / "results" / "latest.json")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="filecleanup-bench-") as directory:
        bench = Bench(Path(directory), quick=args.quick)
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "storage_latency_s": LATENCY,
            "max_concurrent_requests": MAX_CONCURRENT_REQUESTS,
        }
        try:
            for name, run in (
                ("throughput", throughput),
                ("api_cost", api_cost),
                ("burst", burst),
                ("latency", latency),
                ("memory", memory),
            ):
                started = time.perf_counter()
                bench.storage.reset()
                results[name] = run(bench)
                print(f"{name}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        finally:
            bench.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiException as error:
        print(f"bench: the API server answered {error.status}: {error.body}", file=sys.stderr)
        sys.exit(1)
