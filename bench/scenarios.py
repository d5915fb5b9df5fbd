"""The scenarios of ``make bench``, each measured against a baseline from the same run: throughput
against the storage's limit and a sequential loop, API writes per object, a burst, latency to the first
call, and memory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import statistics
import subprocess
import sys
import time
from typing import Any, cast

import httpx

from bench.harness import (
    CREATE_THREADS,
    LATENCY,
    MAX_CONCURRENT_REQUESTS,
    Bench,
    cpu_seconds,
    direct_seconds,
    keys_for,
    rss_mb,
)
from filecleanup.album.client import file_cleanup
from filecleanup.api.models import GROUP, PLURAL, VERSION
from tools.devkit.processes import OperatorProcess
from tools.envtest.polling import eventually


def workload(bench: Bench, latency: float) -> dict[str, Any]:
    """Ten objects of 10,000 keys (four of 5,000 when quick) against a storage answering after
    ``latency``: the operator from the first create to the last Succeeded, against direct calls at the
    storage's limit and the sequential loop, with where the time and the CPU went."""
    objects, per_object = (4, 5_000) if bench.quick else (10, 10_000)
    total = objects * per_object
    bench.storage.reset()
    bench.storage.fault(latency_seconds=latency)
    tag = f"w{round(latency * 1000)}"
    direct = asyncio.run(direct_seconds(bench.storage.url, keys_for(f"{tag}direct", total), concurrent=True))
    subset = keys_for(f"{tag}loop", 2_000)
    sequential = (
        asyncio.run(direct_seconds(bench.storage.url, subset, concurrent=False)) * total / len(subset)
    )

    namespace = bench.namespace(f"workload-{tag}")
    operator = bench.operator(f"workload-{tag}", [namespace])
    operator.start()
    assert operator.process is not None
    try:
        bench.storage.reset()  # the operator's calls alone from here (faults too are reset)
        bench.storage.fault(latency_seconds=latency)
        audit_before = bench.audit_lines()
        api_cpu = cpu_seconds(bench.apiserver_pid)
        operator_cpu = cpu_seconds(operator.process.pid)
        started = time.time()
        bodies = [(f"album-{n}", keys_for(f"{tag}o{n}", per_object)) for n in range(objects)]
        created = bench.create_many(namespace, bodies)
        bench.wait_succeeded(namespace, objects, timeout=600)
        finished = bench.last_completion(namespace)
        time.sleep(1.5)  # Kopf's closing patches, after the last status write
        api_cpu = cpu_seconds(bench.apiserver_pid) - api_cpu
        operator_cpu = cpu_seconds(operator.process.pid) - operator_cpu
        writes = bench.writes(namespace, since_line=audit_before)
        visible = bench.status_visible_at(namespace, since_line=audit_before)
    finally:
        operator.stop()
    calls = httpx.get(f"{bench.storage.base}/_admin/stats", timeout=60).json()["call_times"]
    first_call: dict[str, float] = {}
    last_reply: dict[str, float] = {}
    for begun, ended, key in calls:
        name = f"album-{key.split('/')[0].removeprefix(f'{tag}o')}"
        first_call[name] = min(first_call.get(name, begun), begun)
        last_reply[name] = max(last_reply.get(name, ended), ended)
    window = max(ended for _, ended, _ in calls) - min(begun for begun, _, _ in calls)
    in_flight = sum(ended - begun for begun, ended, _ in calls) / window
    to_first_call = sorted(first_call[name] - created[name] for name in created)
    to_succeeded = sorted(visible[name] - last_reply[name] for name in created)
    end_to_end = finished - started
    return {
        "storage_latency_s": latency,
        "objects": objects,
        "keys": total,
        "direct_keys_per_s": total / direct,
        "loop_keys_per_s": total / sequential,
        "operator_keys_per_s": total / end_to_end,
        "operator_vs_direct": direct / end_to_end,
        "operator_vs_loop": sequential / end_to_end,
        "utilisation": in_flight / MAX_CONCURRENT_REQUESTS,
        "mean_calls_in_flight": in_flight,
        "create_to_first_call_p50_s": statistics.median(to_first_call),
        "create_to_first_call_max_s": to_first_call[-1],
        "last_reply_to_succeeded_p50_s": statistics.median(to_succeeded),
        "last_reply_to_succeeded_max_s": to_succeeded[-1],
        "api_server_cpu_s_per_1000_keys": 1000 * api_cpu / total,
        "operator_cpu_s_per_1000_keys": 1000 * operator_cpu / total,
        "writes_per_object": {kind: count / objects for kind, count in writes.items()},
    }


def manifest(bench: Bench, latency: float = 0.050) -> dict[str, Any]:
    """One manifest of 100,000 keys (20,000 when quick) against a storage answering every delete and
    every read after ``latency``: the operator from the create to Succeeded, against direct calls at
    the storage's limit, with where the time went: the check pass and start before the first call,
    the calls themselves, and the last reply to Succeeded."""
    count = 20_000 if bench.quick else 100_000
    bench.storage.reset()
    bench.storage.fault(latency_seconds=latency)
    direct = asyncio.run(direct_seconds(bench.storage.url, keys_for("mdirect", count), concurrent=True))
    key = "bench/manifest/keys.txt"
    path = bench.storage.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{k}\n" for k in keys_for("m", count)).encode())
    namespace = bench.namespace("manifest")
    operator = bench.operator("manifest", [namespace])
    operator.start()
    assert operator.process is not None
    try:
        bench.storage.reset()  # the operator's calls alone from here (faults too are reset)
        bench.storage.fault(latency_seconds=latency, read_latency_seconds=latency)
        operator_cpu = cpu_seconds(operator.process.pid)
        started = time.time()
        bench.objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, file_cleanup("album", manifest=key)
        )
        bench.wait_succeeded(namespace, 1, timeout=600)
        finished = bench.last_completion(namespace)
        operator_cpu = cpu_seconds(operator.process.pid) - operator_cpu
    finally:
        operator.stop()
    calls = httpx.get(f"{bench.storage.base}/_admin/stats", timeout=60).json()["call_times"]
    first_call = min(begun for begun, _, _ in calls)
    last_reply = max(ended for _, ended, _ in calls)
    in_flight = sum(ended - begun for begun, ended, _ in calls) / (last_reply - first_call)
    end_to_end = finished - started
    return {
        "storage_latency_s": latency,
        "keys": count,
        "manifest_mb": path.stat().st_size / 1024 / 1024,
        "direct_keys_per_s": count / direct,
        "operator_keys_per_s": count / end_to_end,
        "operator_vs_direct": direct / end_to_end,
        "create_to_first_call_s": first_call - started,
        "calls_s": last_reply - first_call,
        "calls_vs_direct": direct / (last_reply - first_call),
        "last_reply_to_succeeded_s": finished - last_reply,
        "mean_calls_in_flight": in_flight,
        "operator_cpu_s_per_1000_keys": 1000 * operator_cpu / count,
    }


def manifest_threshold(bench: Bench, latency: float = 0.050) -> dict[str, Any]:
    """One album of each size deleted twice against a storage answering every call after
    ``latency``: its keys in the object, and as a manifest the album service writes first (timed from
    that write). Each from the start to Succeeded, with the API server's CPU: where the manifest's
    fixed cost (a write, the check pass, one more read) stops paying for itself."""
    sizes = (1_000, 10_000) if bench.quick else (1_000, 5_000, 10_000)
    namespace = bench.namespace("threshold")
    operator = bench.operator("threshold", [namespace])
    operator.start()
    manifests = httpx.Client(base_url=f"{bench.storage.base}/objects/", timeout=60)
    rows: dict[str, dict[str, float]] = {}
    finished = 0
    try:
        for size in sizes:
            for path in ("inline", "manifest"):
                name = f"{path}-{size}"
                keys = keys_for(f"t{name}", size)
                bench.storage.reset()
                bench.storage.fault(latency_seconds=latency, read_latency_seconds=latency)
                time.sleep(1)  # quiet: the CPU below is this album's
                api_cpu = cpu_seconds(bench.apiserver_pid)
                started = time.time()
                if path == "inline":
                    bench.create(namespace, name, keys)
                else:
                    key = f"{name}/keys.txt"
                    time.sleep(latency)  # the write, as the storage would answer it
                    manifests.put(key, content="".join(f"{k}\n" for k in keys)).raise_for_status()
                    bench.objects.create_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, file_cleanup(name, manifest=key)
                    )
                finished += 1
                bench.wait_succeeded(namespace, finished, timeout=300)
                done = bench.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                completed = cast("dict[str, Any]", done)["status"]["completionTime"]
                time.sleep(1.5)  # Kopf's closing patches, after the last status write
                rows.setdefault(str(size), {}).update(
                    {
                        f"{path}_seconds": datetime.datetime.fromisoformat(completed).timestamp() - started,
                        f"{path}_api_server_cpu_s": cpu_seconds(bench.apiserver_pid) - api_cpu,
                    }
                )
    finally:
        manifests.close()
        operator.stop()
    return rows


def api_cost(bench: Bench) -> dict[str, Any]:
    bench.storage.fault(latency_seconds=LATENCY)
    rows: dict[str, dict[str, float]] = {}
    namespace_operator = bench.operator("api-cost", ["cost-*"])
    namespace_operator.start()
    assert namespace_operator.process is not None
    operator_pid = namespace_operator.process.pid
    try:
        for size in (100, 1_000, 10_000):
            namespace = bench.namespace(f"cost-{size}")
            time.sleep(1)  # quiet: the CPU below is this object's
            api_cpu, operator_cpu = (
                cpu_seconds(bench.apiserver_pid),
                cpu_seconds(namespace_operator.process.pid),
            )
            started = time.time()
            bench.create(namespace, "album", keys_for(f"c{size}", size))
            bench.wait_succeeded(namespace, 1, timeout=120)
            elapsed = bench.last_completion(namespace) - started
            time.sleep(1.5)  # Kopf's last writes after the handler finished
            writes = bench.writes(namespace)
            rows[str(size)] = {
                "seconds": elapsed,
                **writes,
                "writes": sum(writes.values()),
                "writes_per_second_of_run": sum(writes.values()) / elapsed,
                "api_server_cpu_s": cpu_seconds(bench.apiserver_pid) - api_cpu,
                "operator_cpu_s": cpu_seconds(operator_pid) - operator_cpu,
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
        bench.wait_succeeded(namespace, count, timeout=600)
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
    audit_before = bench.audit_lines()
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
    stats = httpx.get(f"{bench.storage.base}/_admin/stats", timeout=30).json()
    delays = sorted(stats["first_requested_at"][key] - created for key, created in created_at.items())
    p50 = statistics.median(delays)
    p99 = delays[min(len(delays) - 1, round(0.99 * len(delays)))]
    rtt = statistics.median(round_trips)
    replied = {key: ended for _, ended, key in stats["call_times"]}
    visible = bench.status_visible_at(namespace, since_line=audit_before)
    to_succeeded = sorted(visible[f"album-{n}"] - replied[f"latency/{n}.jpg"] for n in range(count))
    return {
        "objects": count,
        "p50_s": p50,
        "p99_s": p99,
        "last_reply_to_succeeded_p50_s": statistics.median(to_succeeded),
        "last_reply_to_succeeded_max_s": to_succeeded[-1],
        "create_round_trip_s": rtt,
        "p50_vs_create_round_trip": p50 / rtt,
    }


def memory(bench: Bench) -> dict[str, Any]:
    sizes = (2_000, 5_000) if bench.quick else (10_000, 50_000)
    baseline = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filecleanup.controller.handlers, filecleanup.__main__, time; time.sleep(60)",
        ]
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
    bench.create(namespace, "album-0", ["m/0.jpg"])
    operator = bench.operator("memory-template", [namespace])
    operator.start()
    try:
        bench.wait_succeeded(namespace, 1, timeout=60)
        time.sleep(1)
    finally:
        operator.stop()
    template = cast(
        "dict[str, Any]",
        bench.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "album-0"),
    )
    metadata = {key: template["metadata"][key] for key in ("annotations", "labels")}
    status = {k: v for k, v in template["status"].items() if k != "kopf"}

    def finished(n: int) -> None:
        name = f"album-{n}"
        bench.create(namespace, name, [f"m/{n}.jpg"], metadata=metadata)
        bench.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    results: dict[str, Any] = {
        "idle_rss_mb": idle_mb,
        "imports_only_rss_mb": baseline_mb,
        "idle_vs_imports_only": idle_mb / baseline_mb,
    }
    made = 1
    for count in sizes:
        with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(finished, range(made, count)))
        made = count
        loaded = bench.operator(f"memory-{count}", [namespace])
        before_restart = bench.audit_lines()
        loaded.start()
        assert loaded.process is not None
        try:

            def all_seen(expected: int = count, operator: OperatorProcess = loaded) -> bool:
                text = httpx.get(operator.metrics_url, timeout=10).text
                return f'filecleanup_objects{{phase="Succeeded"}} {float(expected)}' in text

            eventually("the operator to count every finished object", all_seen, timeout=600, interval=0.5)
            time.sleep(2)
            results[f"rss_mb_with_{count}_finished"] = rss_mb(loaded.process.pid)
            results[f"writes_on_restart_with_{count}_finished"] = sum(
                bench.writes(namespace, since_line=before_restart).values()
            )
        finally:
            loaded.stop()
    results["finished_objects"] = list(sizes)
    return results
