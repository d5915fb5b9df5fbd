"""``make bench``: two workloads (the storage answering after 20 ms and after 50 ms), a manifest, API
cost, burst, latency and memory of the operator, each against a baseline measured in the same run
(absolute times on a shared machine vary; ratios travel). The API server's CPU per key is also
measured for the operator as it was at a baseline commit (``--baseline-ref``), on a control plane of
its own in the same run.

It starts its own control plane (with an audit log, to count the operator's writes), the reference
storage server, and the operator; prints a table and writes JSON.

    python -m bench.run [--json bench/results/latest.json] [--quick] [--only workloads,memory,...]

Benchmarks are not tests: they report, they never fail the suite.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from bench.fairness import fairness
from bench.harness import MAX_CONCURRENT_REQUESTS, REPOSITORY, Bench
from bench.report import table
from bench.scenarios import api_cost, burst, latency, manifest, manifest_threshold, memory, workload

# The operator as it was before its writes, checkpoints and CRD were made lighter: the same-run
# baseline of the API server's CPU per key.
BASELINE_REF = "ca01ad2"
WORKLOAD_LATENCIES = (0.020, 0.050)
Scenario = Callable[[Bench], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {
    "workload_20ms": functools.partial(workload, latency=WORKLOAD_LATENCIES[0]),
    "workload_50ms": functools.partial(workload, latency=WORKLOAD_LATENCIES[1]),
    "manifest_50ms": manifest,
    "manifest_threshold": manifest_threshold,
    "api_cost": api_cost,
    "burst": burst,
    "latency": latency,
    "memory": memory,
    "fairness": fairness,
}


def baseline_operator(ref: str, directory: Path) -> tuple[Path, dict[str, str]]:
    """That version's CRD, and the environment that runs that version's operator code."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", ref, "operator", "crds"], check=True, capture_output=True
    ).stdout
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory / "crds" / "filecleanup.dev_filecleanups.yaml", {
        "PYTHONPATH": str(directory / "operator")
    }


def run_baseline(ref: str, directory: Path, *, quick: bool) -> dict[str, Any]:
    crd, env = baseline_operator(ref, directory / "code")
    bench = Bench(directory / "bench", quick=quick, crd=crd, operator_env=env)
    try:
        return {
            f"workload_{round(seconds * 1000)}ms": workload(bench, seconds) for seconds in WORKLOAD_LATENCIES
        }
    finally:
        bench.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=REPOSITORY / "bench" / "results" / "latest.json")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--only", help=f"comma-separated, of: {', '.join(SCENARIOS)}, baseline (default: all of them)"
    )
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help=f"(default: {BASELINE_REF})")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else [*SCENARIOS, "baseline"]
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "max_concurrent_requests": MAX_CONCURRENT_REQUESTS,
        "baseline_ref": args.baseline_ref,
    }
    with tempfile.TemporaryDirectory(prefix="filecleanup-bench-") as directory:
        bench = Bench(Path(directory) / "current", quick=args.quick)
        try:
            for name in [name for name in SCENARIOS if name in chosen]:
                started = time.perf_counter()
                bench.storage.reset()
                results[name] = SCENARIOS[name](bench)
                print(f"{name}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        finally:
            bench.close()
        if "baseline" in chosen:
            started = time.perf_counter()
            results["baseline"] = run_baseline(
                args.baseline_ref, Path(directory) / "baseline", quick=args.quick
            )
            print(f"baseline: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
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
