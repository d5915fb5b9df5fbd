"""The table ``make bench`` prints (and docs/benchmarks.md quotes): one row per figure, with the
baseline or ratio that gives it meaning."""

from __future__ import annotations

from typing import Any


def table(results: dict[str, Any]) -> str:
    speed, cost, burst, latency, memory = (
        results[name] for name in ("throughput", "api_cost", "burst", "latency", "memory")
    )
    rows = [
        ("a", "throughput, direct (storage limit)", f"{speed['direct_keys_per_s']:,.0f} keys/s", "baseline"),
        ("a", "throughput, sequential loop", f"{speed['loop_keys_per_s']:,.0f} keys/s", "baseline"),
        (
            "a",
            f"throughput, operator ({speed['keys']:,} keys)",
            f"{speed['operator_keys_per_s']:,.0f} keys/s",
            (
                f"{speed['operator_vs_direct']:.2f}x direct, "
                f"{speed['operator_vs_loop']:.1f}x sequential loop "
                f"(creating the objects alone: {speed['creation_only_s']:.1f} s)"
            ),
        ),
        (
            "a",
            "throughput, operator on a backlog (objects already there)",
            f"{speed['backlog_keys_per_s']:,.0f} keys/s",
            f"{speed['backlog_vs_direct']:.2f}x direct, {speed['backlog_vs_loop']:.1f}x sequential loop",
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
            f"burst, {burst['objects']:,} objects x 20 keys",
            f"{burst['seconds_to_all_succeeded']:.1f} s, {burst['operator_cpu_seconds']:.1f} CPU s",
            f"{burst['vs_creation_only']:.2f}x creating them alone ({burst['creation_only_seconds']:.1f} s)",
        ),
        (
            "d",
            f"create to first delete call ({latency['objects']} objects)",
            f"p50 {latency['p50_s'] * 1000:.0f} ms, p99 {latency['p99_s'] * 1000:.0f} ms",
            (
                f"p50 = {latency['p50_vs_create_round_trip']:.1f}x a create round trip "
                f"({latency['create_round_trip_s'] * 1000:.0f} ms)"
            ),
        ),
        (
            "e",
            "operator RSS, idle",
            f"{memory['idle_rss_mb']:.0f} MB",
            (
                f"{memory['idle_vs_imports_only']:.2f}x its imports alone "
                f"({memory['imports_only_rss_mb']:.0f} MB)"
            ),
        ),
        (
            "e",
            f"operator RSS, {memory['finished_objects']:,} finished objects",
            f"{memory['rss_mb_with_finished_objects']:.0f} MB",
            f"{memory['writes_on_restart_with_finished_objects']} writes on restart",
        ),
    ]
    lines = ["| # | what | measured | ratio / context |", "|---|---|---|---|"]
    lines += [
        f"| {scenario} | {what} | {measured} | {context} |" for scenario, what, measured, context in rows
    ]
    return "\n".join(lines)
