"""The scenarios of ``make bench``, each measured against a baseline from the same run: throughput
against the storage's limit and a sequential loop, API writes per object, a burst, latency to the first
call, and memory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import subprocess
import sys
import time
from typing import Any, cast

import httpx
from harness import (
    CREATE_THREADS,
    LATENCY,
    Bench,
    cpu_seconds,
    direct_seconds,
    keys_for,
    rss_mb,
)

from filecleanup.models import GROUP, PLURAL, VERSION
from polling import eventually


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
        "loop_keys_per_s": total / sequential,
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
