"""Layer controller. ``python -m filecleanup.controller.selfcheck``: what the chart's ``helm test`` runs.

It checks that the API server serves the FileCleanup kind (by discovery, which needs no RBAC), that the
operator answers its liveness endpoint through its Service, and, given a metrics port, that the
operator's metrics are served there. The Service is reached through the API server's service proxy,
so that the check needs neither cluster DNS nor Service routing, and its RBAC is one verb on the
Service's ports. Exits 0 when all answer, 1 with the reasons otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from kubernetes.aio import client

from filecleanup.api import kube
from filecleanup.api.models import GROUP, PLURAL, VERSION

TIMEOUT_SECONDS = 10.0
# A metric every replica serves from its start, leader or not: its presence says the page is ours.
OPERATOR_METRIC = "filecleanup_leader"


def metrics_problem(text: str) -> str | None:
    """Why a /metrics page is not the operator's (Prometheus text format), or None."""
    names = {line.split(None, 1)[0].split("{", 1)[0] for line in text.splitlines() if line[:1].isalpha()}
    return None if OPERATOR_METRIC in names else f"its metrics have no {OPERATOR_METRIC} sample"


async def check(namespace: str, service: str, port: str, metrics_port: str | None) -> list[str]:
    """What is wrong; nothing when all is well."""
    problems: list[str] = []
    api = await kube.connect()
    proxy = client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path
    try:
        try:
            if not await kube.serves_filecleanups(api):
                problems.append(
                    f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: is the CRD installed?"
                )
        except client.ApiException as error:
            problems.append(f"API discovery failed: {error.status} {error.reason}")
        try:
            await proxy(f"{service}:{port}", namespace, "healthz", _request_timeout=TIMEOUT_SECONDS)
        except client.ApiException as error:
            problems.append(
                f"the operator did not answer through Service {namespace}/{service} port {port}: "
                f"{error.status} {error.reason}"
            )
        if metrics_port is not None:
            try:
                page = await proxy(
                    f"{service}:{metrics_port}", namespace, "metrics", _request_timeout=TIMEOUT_SECONDS
                )
            except client.ApiException as error:
                problems.append(
                    f"the operator's metrics did not answer through Service {namespace}/{service} port "
                    f"{metrics_port}: {error.status} {error.reason}"
                )
            else:
                problem = metrics_problem(str(page))
                if problem is not None:
                    problems.append(f"Service {namespace}/{service} port {metrics_port}: {problem}")
    finally:
        await api.close()  # type: ignore[no-untyped-call]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="filecleanup-selfcheck", description=__doc__)
    parser.add_argument("--namespace", required=True, help="the operator's namespace")
    parser.add_argument("--service", required=True, help="the operator's Service")
    parser.add_argument("--port", default="health", help="the Service's port for the liveness endpoint")
    parser.add_argument("--metrics-port", help="the Service's port for the metrics; unchecked if unset")
    args = parser.parse_args(argv)
    problems = asyncio.run(check(args.namespace, args.service, args.port, args.metrics_port))
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)  # noqa: T201
    if not problems:
        what = "answers and serves its metrics" if args.metrics_port else "answers"
        print(f"ok: {PLURAL}.{GROUP}/{VERSION} is served and {args.service} {what}")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
