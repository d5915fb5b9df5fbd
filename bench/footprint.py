"""``make bench-footprint``: what FileCleanups cost etcd, measured on the real control plane.

1. A steady state: objects of 1,000 keys created at a steady rate for ``--minutes`` (30), the operator
   running with its default retention. etcd's size in use (``etcd_mvcc_db_total_size_in_use_in_bytes``)
   is sampled over time; it must level off once the first objects expire and the API server compacts.
2. One deletion of ``--manifest-keys`` (1,000,000) keys through a manifest: its throughput against the
   same calls made directly, the operator's peak RSS, the object's size, and an exact resume after a
   SIGKILL halfway.

    python -m bench.footprint [--minutes 30] [--rate 1] [--manifest-keys 1000000] [--only steady|manifest]

Benchmarks are not tests: they report, they never fail the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx

from bench.harness import LATENCY, Bench, direct_seconds
from filecleanup.album.client import file_cleanup
from filecleanup.api.models import GROUP, PLURAL, VERSION
from tools.devkit.processes import OperatorProcess
from tools.envtest.polling import eventually

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 15.0
MB = 1024 * 1024
COMPACTION_MINUTES = 5.0  # kube-apiserver's --etcd-compaction-interval default
LEVELLED = 1.1


def album_keys(album: str, count: int) -> list[str]:
    """About 60 bytes a key, as the issue's measurement (1,000 keys, 60 KB)."""
    return [f"{album}/photo-{i:07d}-{'x' * 24}.jpg" for i in range(count)]


def etcd_sizes(bench: Bench) -> tuple[float, float]:
    """etcd's database: the size in use and the size on disk, in bytes."""
    state = bench.plane.load_state()
    assert state is not None
    text = httpx.get(f"http://127.0.0.1:{state.etcd_port}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in {"etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_mvcc_db_total_size_in_bytes"}:
            values[name] = float(value)
    return values["etcd_mvcc_db_total_size_in_use_in_bytes"], values["etcd_mvcc_db_total_size_in_bytes"]


def operator_gauges(operator: OperatorProcess) -> dict[str, float]:
    """The operator's census of finished objects and the bytes they store."""
    found: dict[str, float] = {}
    for line in httpx.get(operator.metrics_url, timeout=10).text.splitlines():
        for family in ("filecleanup_objects{", "filecleanup_stored_bytes{"):
            if line.startswith(family):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(pid)


def steady(bench: Bench, minutes: float, rate: float, keys_per_object: int) -> dict[str, Any]:
    bench.storage.fault(latency_seconds=LATENCY)
    namespace = bench.namespace("steady")
    operator = bench.operator("steady", [namespace])  # no retention settings: the defaults
    operator.start()
    assert operator.process is not None
    samples: list[dict[str, float]] = []
    created = 0
    started = time.monotonic()
    next_sample = started
    try:
        while (now := time.monotonic()) < started + minutes * 60:
            if now >= started + created / rate:
                name = f"album-{created:06d}"
                bench.create(namespace, name, album_keys(f"steady/{name}", keys_per_object))
                created += 1
            if now >= next_sample:
                in_use, on_disk = etcd_sizes(bench)
                gauges = operator_gauges(operator)
                samples.append(
                    {
                        "minute": (now - started) / 60,
                        "created": created,
                        "etcd_in_use_mb": in_use / MB,
                        "etcd_on_disk_mb": on_disk / MB,
                        "succeeded_objects": gauges.get('filecleanup_objects{phase="Succeeded"}', 0),
                        "succeeded_stored_mb": gauges.get('filecleanup_stored_bytes{phase="Succeeded"}', 0)
                        / MB,
                    }
                )
                print(json.dumps(samples[-1]), file=sys.stderr)
                next_sample += SAMPLE_SECONDS
            time.sleep(max(0.0, min(started + created / rate, next_sample) - time.monotonic()))
        rss = peak_rss_mb(operator.process.pid)
    finally:
        operator.stop()
    return {
        "minutes": minutes,
        "objects_per_second": rate,
        "keys_per_object": keys_per_object,
        "objects_created": created,
        "samples": samples,
        **levelling(samples),
        "operator_peak_rss_mb": rss,
    }


def levelling(samples: list[dict[str, float]]) -> dict[str, Any]:
    """etcd's size in use over the last two compaction periods of the run: the API server compacts
    every 5 minutes, so each period holds one whole rise and fall, and two periods compare like with
    like. Levelled off: the last period's mean is within 10 % of the one before."""
    end = samples[-1]["minute"]
    last = [s["etcd_in_use_mb"] for s in samples if s["minute"] > end - COMPACTION_MINUTES]
    before = [
        s["etcd_in_use_mb"]
        for s in samples
        if end - 2 * COMPACTION_MINUTES < s["minute"] <= end - COMPACTION_MINUTES
    ]
    return {
        "in_use_mb_last_period_mean": statistics.mean(last),
        "in_use_mb_last_period_range": [min(last), max(last)],
        "in_use_mb_period_before_mean": statistics.mean(before),
        "in_use_mb_period_before_range": [min(before), max(before)],
        "last_vs_period_before": statistics.mean(last) / statistics.mean(before),
        "in_use_mb_max": max(s["etcd_in_use_mb"] for s in samples),
        "on_disk_mb_max": max(s["etcd_on_disk_mb"] for s in samples),
    }


def storage_summary(bench: Bench) -> dict[str, int]:
    return cast(
        "dict[str, int]",
        httpx.get(f"{bench.storage.base}/_admin/stats", params={"summary": "1"}, timeout=30).json(),
    )


def manifest_run(
    bench: Bench, namespace: str, name: str, keys: list[str], *, kill_at: float | None
) -> dict[str, Any]:
    """One manifest deletion from creation to Succeeded; with ``kill_at`` (a fraction of the keys), the
    operator is SIGKILLed once the object's status shows that many deleted, then started again."""
    key = f"bench/{name}/manifest.txt"
    path = bench.storage.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{k}\n" for k in keys).encode())
    bench.storage.reset()
    bench.storage.fault(latency_seconds=LATENCY)
    # The one object is the only work: it may use every call the storage allows.
    operator = bench.operator(name, [namespace])  # one object may use all of the storage's calls
    operator.start()
    assert operator.process is not None
    audit_before = bench.audit_lines()

    def current() -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            bench.objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name),
        )

    result: dict[str, Any] = {"manifest_mb": path.stat().st_size / MB}
    started = time.time()
    bench.objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, file_cleanup(name, manifest=key)
    )
    try:
        if kill_at is not None:
            eventually(
                "the checkpoint before the kill",
                lambda: (current().get("status") or {}).get("deleted", 0) >= kill_at * len(keys),
                timeout=600,
                interval=0.2,
            )
            operator.process.send_signal(signal.SIGKILL)
            operator.process.wait()
            result["sent_before_kill"] = storage_summary(bench)["keys_requested"]
            result["checkpointed_at_kill"] = current()["status"]["deleted"]
            operator.start()
            assert operator.process is not None
        eventually(
            "Succeeded",
            lambda: (current().get("status") or {}).get("phase") == "Succeeded",
            timeout=1800,
            interval=0.5,
        )
        result["peak_rss_mb"] = peak_rss_mb(operator.process.pid)
    finally:
        operator.stop()
    done = current()
    summary = storage_summary(bench)
    result |= {
        # From the create to the completion the operator recorded (not to when this loop noticed it).
        "seconds": datetime.datetime.fromisoformat(done["status"]["completionTime"]).timestamp() - started,
        "deleted": done["status"]["deleted"],
        "total": done["status"]["total"],
        "object_bytes": len(json.dumps(done)),
        "distinct_keys_sent": summary["distinct_keys"],
        "keys_sent_again": summary["keys_requested"] - summary["distinct_keys"],
        "writes": bench.writes(namespace, since_line=audit_before),
    }
    return result


def manifest(bench: Bench, count: int) -> dict[str, Any]:
    bench.storage.fault(latency_seconds=LATENCY)
    direct = asyncio.run(direct_seconds(bench.storage.url, album_keys("direct", count), concurrent=True))
    namespace = bench.namespace("manifest")
    in_use_before, _ = etcd_sizes(bench)
    whole = manifest_run(bench, namespace, "whole", album_keys("whole", count), kill_at=None)
    in_use_after, _ = etcd_sizes(bench)
    killed = manifest_run(bench, namespace, "killed", album_keys("killed", count), kill_at=0.5)
    return {
        "keys": count,
        "direct_keys_per_s": count / direct,
        "operator_keys_per_s": count / whole["seconds"],
        "operator_vs_direct": direct / whole["seconds"],
        "etcd_in_use_delta_mb": (in_use_after - in_use_before) / MB,
        "whole": whole,
        "killed": killed,
    }


def table(results: dict[str, Any]) -> str:
    rows = []
    if "steady" in results:
        s = results["steady"]
        verdict = "levels off" if s["last_vs_period_before"] < LEVELLED else "still growing"
        low, high = s["in_use_mb_last_period_range"]
        rows += [
            (
                (
                    f"steady state: {s['objects_per_second']:g} objects/s x {s['keys_per_object']:,} keys, "
                    f"{s['minutes']:g} min ({s['objects_created']:,} objects)"
                ),
                (
                    f"etcd in use over the last 5 min: mean {s['in_use_mb_last_period_mean']:.0f} MB, "
                    f"{low:.0f} to {high:.0f} MB; file {s['on_disk_mb_max']:.0f} MB"
                ),
                f"{s['last_vs_period_before']:.2f}x the 5 min before: {verdict}",
            ),
            ("steady state: operator", f"peak RSS {s['operator_peak_rss_mb']:.0f} MB", ""),
        ]
    if "manifest" in results:
        m = results["manifest"]
        whole, killed = m["whole"], m["killed"]
        unrecorded = killed["sent_before_kill"] - killed["checkpointed_at_kill"]
        rows += [
            ("manifest: direct calls (storage limit)", f"{m['direct_keys_per_s']:,.0f} keys/s", "baseline"),
            (
                f"manifest: {m['keys']:,} keys ({whole['manifest_mb']:.0f} MB) through one object",
                f"{m['operator_keys_per_s']:,.0f} keys/s, peak RSS {whole['peak_rss_mb']:.0f} MB",
                (
                    f"{m['operator_vs_direct']:.2f}x direct; object {whole['object_bytes']:,} bytes, "
                    f"{sum(whole['writes'].values())} API writes, etcd {m['etcd_in_use_delta_mb']:+.1f} MB"
                ),
            ),
            (
                "manifest: SIGKILL halfway, then resumed",
                (
                    f"{killed['deleted']:,} of {killed['total']:,} deleted, "
                    f"{killed['distinct_keys_sent']:,} distinct keys sent"
                ),
                (
                    f"{killed['keys_sent_again']:,} sent again, of {unrecorded:,} sent but not checkpointed "
                    f"at the kill; peak RSS {killed['peak_rss_mb']:.0f} MB"
                ),
            ),
        ]
    lines = ["| what | measured | ratio / context |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=REPOSITORY / "bench" / "results" / "footprint.json")
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="length of the steady state (default: 30)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="objects created per second (default: 1)")
    parser.add_argument("--keys-per-object", type=int, default=1000)
    parser.add_argument("--manifest-keys", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["steady", "manifest"], help="run one part only")
    args = parser.parse_args()
    results: dict[str, Any] = {"storage_latency_s": LATENCY}
    with tempfile.TemporaryDirectory(prefix="filecleanup-footprint-") as directory:
        bench = Bench(Path(directory), quick=False)
        try:
            if args.only in {None, "steady"}:
                results["steady"] = steady(bench, args.minutes, args.rate, args.keys_per_object)
            if args.only in {None, "manifest"}:
                results["manifest"] = manifest(bench, args.manifest_keys)
        finally:
            bench.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
