"""``python -m filecleanup.selfcheck``: what the chart's ``helm test`` runs.

It checks that the API server serves the FileCleanup kind, and that the operator answers its liveness
endpoint through its Service. The Service is reached through the API server's service proxy, so that
the check needs neither cluster DNS nor Service routing, and its RBAC is one verb on one Service.
Exits 0 when both answer, 1 with the reasons otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from kubernetes.aio import client

from filecleanup import kube
from filecleanup.models import GROUP, PLURAL, VERSION

TIMEOUT_SECONDS = 10.0


async def check(namespace: str, service: str, port: str) -> list[str]:
    """What is wrong; nothing when all is well."""
    problems: list[str] = []
    api = await kube.connect()
    try:
        try:
            if not await kube.serves_filecleanups(api):
                problems.append(
                    f"the API server does not serve {PLURAL}.{GROUP}/{VERSION}: is the CRD installed?"
                )
        except client.ApiException as error:
            problems.append(f"API discovery failed: {error.status} {error.reason}")
        try:
            await client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
                f"{service}:{port}", namespace, "healthz", _request_timeout=TIMEOUT_SECONDS
            )
        except client.ApiException as error:
            problems.append(
                f"the operator did not answer through Service {namespace}/{service} port {port}: "
                f"{error.status} {error.reason}"
            )
    finally:
        await api.close()  # type: ignore[no-untyped-call]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="filecleanup-selfcheck", description=__doc__)
    parser.add_argument("--namespace", required=True, help="the operator's namespace")
    parser.add_argument("--service", required=True, help="the operator's Service")
    parser.add_argument("--port", default="health", help="the Service's port for the liveness endpoint")
    args = parser.parse_args(argv)
    problems = asyncio.run(check(args.namespace, args.service, args.port))
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)  # noqa: T201
    if not problems:
        print(f"ok: {PLURAL}.{GROUP}/{VERSION} is served and {args.service} answers")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
