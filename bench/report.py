"""The table ``make bench`` prints (and docs/benchmarks.md quotes): one row per figure, with the
baseline or ratio that gives it meaning."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str]


def workload_rows(name: str, run: dict[str, Any], baseline: dict[str, Any] | None) -> list[Row]:
    latency_ms = round(run["storage_latency_s"] * 1000)
    label = f"{latency_ms} ms storage"
    writes = run["writes_per_object"]
    api_cpu = run["api_server_cpu_s_per_1000_keys"]
    api_context = "per 1,000 keys deleted"
    if baseline is not None and name in baseline:
        before = baseline[name]["api_server_cpu_s_per_1000_keys"]
        api_context = f"{api_cpu / before:.2f}x the baseline commit's ({before:.3f} s), same run"
    return [
        ("a", f"{label}: direct (storage limit)", f"{run['direct_keys_per_s']:,.0f} keys/s", "baseline"),
        ("a", f"{label}: sequential loop", f"{run['loop_keys_per_s']:,.0f} keys/s", "baseline"),
        (
            "a",
            f"{label}: operator, create to last Succeeded ({run['keys']:,} keys)",
            f"{run['operator_keys_per_s']:,.0f} keys/s",
            f"{run['operator_vs_direct']:.2f}x direct, {run['operator_vs_loop']:.1f}x the loop",
        ),
        (
            "a",
            f"{label}: storage utilisation",
            f"{run['utilisation']:.0%}",
            f"{run['mean_calls_in_flight']:.1f} calls in flight on average, of the cap",
        ),
        (
            "a",
            f"{label}: create to first call",
            f"p50 {run['create_to_first_call_p50_s'] * 1000:.0f} ms",
            f"max {run['create_to_first_call_max_s'] * 1000:.0f} ms",
        ),
        (
            "a",
            f"{label}: last reply to Succeeded",
            f"p50 {run['last_reply_to_succeeded_p50_s'] * 1000:.0f} ms",
            f"max {run['last_reply_to_succeeded_max_s'] * 1000:.0f} ms",
        ),
        ("a", f"{label}: API-server CPU", f"{api_cpu:.3f} s", api_context),
        (
            "a",
            f"{label}: operator CPU",
            f"{run['operator_cpu_s_per_1000_keys']:.3f} s",
            "per 1,000 keys deleted",
        ),
        (
            "a",
            f"{label}: writes per object",
            f"{sum(writes.values()):.1f}",
            f"{writes['object']:.1f} object, {writes['status']:.1f} status, {writes['events']:.1f} events",
        ),
    ]


def manifest_rows(run: dict[str, Any]) -> list[Row]:
    label = f"{round(run['storage_latency_s'] * 1000)} ms storage, a manifest"
    return [
        ("a", f"{label}: direct (storage limit)", f"{run['direct_keys_per_s']:,.0f} keys/s", "baseline"),
        (
            "a",
            f"{label}: operator, create to Succeeded ({run['keys']:,} keys, {run['manifest_mb']:.1f} MB)",
            f"{run['operator_keys_per_s']:,.0f} keys/s",
            f"{run['operator_vs_direct']:.2f}x direct",
        ),
        (
            "a",
            f"{label}: create to first call (the check pass)",
            f"{run['create_to_first_call_s']:.2f} s",
            (
                f"then the calls at {run['calls_vs_direct']:.2f}x direct, "
                f"{run['mean_calls_in_flight']:.1f} in flight on average"
            ),
        ),
    ]


def table(results: dict[str, Any]) -> str:
    rows: list[Row] = []
    baseline = results.get("baseline")
    for name in ("workload_20ms", "workload_50ms"):
        if name in results:
            rows += workload_rows(name, results[name], baseline)
    if "manifest_50ms" in results:
        rows += manifest_rows(results["manifest_50ms"])
    for size, row in results.get("manifest_threshold", {}).items():
        rows.append(
            (
                "a",
                f"50 ms storage: one album of {int(size):,} keys, in the object / as a manifest",
                f"{row['inline_seconds']:.2f} s / {row['manifest_seconds']:.2f} s",
                (
                    f"API-server CPU s {row['inline_api_server_cpu_s']:.2f} / "
                    f"{row['manifest_api_server_cpu_s']:.2f}, the 1.5 s after it included"
                ),
            )
        )
    for size, row in results.get("api_cost", {}).items():
        rows.append(
            (
                "b",
                f"API writes, {int(size):,} keys",
                f"{row['writes']} ({row['object']} object, {row['status']} status, {row['events']} events)",
                (
                    f"{row['seconds']:.1f} s run; CPU s for the object, create included: API server "
                    f"{row['api_server_cpu_s']:.2f}, operator {row['operator_cpu_s']:.2f}"
                ),
            )
        )
    if "burst" in results:
        burst = results["burst"]
        rows.append(
            (
                "c",
                f"burst, {burst['objects']:,} objects x 20 keys",
                f"{burst['seconds_to_all_succeeded']:.1f} s, {burst['operator_cpu_seconds']:.1f} CPU s",
                (
                    f"{burst['vs_creation_only']:.2f}x creating them alone "
                    f"({burst['creation_only_seconds']:.1f} s)"
                ),
            )
        )
    if "latency" in results:
        latency = results["latency"]
        rows.append(
            (
                "d",
                f"create to first delete call ({latency['objects']} objects, one at a time)",
                f"p50 {latency['p50_s'] * 1000:.0f} ms, p99 {latency['p99_s'] * 1000:.0f} ms",
                (
                    f"p50 = {latency['p50_vs_create_round_trip']:.1f}x a create round trip "
                    f"({latency['create_round_trip_s'] * 1000:.0f} ms)"
                ),
            )
        )
        rows.append(
            (
                "d",
                "last reply to Succeeded (the same objects)",
                f"p50 {latency['last_reply_to_succeeded_p50_s'] * 1000:.0f} ms",
                f"max {latency['last_reply_to_succeeded_max_s'] * 1000:.0f} ms",
            )
        )
    if "memory" in results:
        memory = results["memory"]
        rows.append(
            (
                "e",
                "operator RSS, idle",
                f"{memory['idle_rss_mb']:.0f} MB",
                (
                    f"{memory['idle_vs_imports_only']:.2f}x its imports alone "
                    f"({memory['imports_only_rss_mb']:.0f} MB)"
                ),
            )
        )
        rows += [
            (
                "e",
                f"operator RSS, {count:,} finished objects",
                f"{memory[f'rss_mb_with_{count}_finished']:.0f} MB",
                f"{memory[f'writes_on_restart_with_{count}_finished']} writes on restart",
            )
            for count in memory["finished_objects"]
        ]
    if "fairness" in results:
        fairness = results["fairness"]
        for label, words in (("without_apf", "without"), ("with_apf", "with")):
            run = fairness[label]
            rows.append(
                (
                    "f",
                    (
                        f"a neighbour's list pods during a flood of {fairness['objects']:,} creates, "
                        f"{words} the chart's flow control"
                    ),
                    f"p50 {run['neighbour_p50_ms']:.0f} ms, p99 {run['neighbour_p99_ms']:.0f} ms",
                    f"flood {run['flood_objects_per_s']:.0f} objects/s; {run['neighbour_requests']} lists",
                )
            )
    lines = ["| # | what | measured | ratio / context |", "|---|---|---|---|"]
    lines += [
        f"| {scenario} | {what} | {measured} | {context} |" for scenario, what, measured, context in rows
    ]
    return "\n".join(lines)
