"""``make bench``: throughput, API cost, burst, latency and memory of the operator, each against a
baseline measured in the same run (absolute times on a shared machine vary; ratios travel).

It starts its own control plane (with an audit log, to count the operator's writes), the reference
storage server at 20 ms per call, and the operator; prints a table and writes JSON.

    python bench/run.py [--json bench/results/latest.json] [--quick]

Benchmarks are not tests: they report, they never fail the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import LATENCY, MAX_CONCURRENT_REQUESTS, REPOSITORY, Bench
from kubernetes.client.exceptions import ApiException
from report import table
from scenarios import api_cost, burst, latency, memory, throughput


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
