"""Above the layers: ``python -m filecleanup`` / ``filecleanup-operator``, the operator's entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import kopf
from aiohttp import web
from kopf._cogs.structs import references  # the insights kopf.operator() takes (controller/namespaces.py)

from filecleanup.api import kube, redaction
from filecleanup.api.config import CONFIG_ENV, ConfigError, OperatorConfig, load_config
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import DEFAULT_CONTROLLER
from filecleanup.controller import kopf_logs, namespaces
from filecleanup.controller.leader import LeaderElector, LeaseTiming, LostLease
from filecleanup.controller.pause import DEFAULT_POLL_SECONDS, PauseSwitch
from filecleanup.controller.runtime import Runtime
from filecleanup.run.rounds import DEFAULT_SHUTDOWN_SECONDS

logger = logging.getLogger("filecleanup")
EXIT_LOST_LEASE = 1
EXIT_BAD_SETUP = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="filecleanup-operator",
        description=(
            "Run the FileCleanup operator: delete the storage keys listed in FileCleanup resources. "
            "It uses the in-cluster service account, or else the current kubeconfig (KUBECONFIG)."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"operator configuration file (default: the path in ${CONFIG_ENV})",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NAMESPACE",
        help="watch only this namespace (repeatable; globs like 'team-*' work); default: all namespaces",
    )
    parser.add_argument(
        "--liveness",
        metavar="HOST:PORT",
        help=(
            "serve the liveness probe at http://HOST:PORT/healthz, and /readyz (this replica works); "
            "'off' disables them (default: 0.0.0.0:8080 in a pod, 127.0.0.1:8080 elsewhere)"
        ),
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help=(
            "serve Prometheus metrics at http://HOST:PORT/metrics; 'off' disables it "
            "(default: 0.0.0.0:9090 in a pod, 127.0.0.1:9090 elsewhere)"
        ),
    )
    parser.add_argument(
        "--log-format", choices=["plain", "json"], default="plain", help="log line format (default: plain)"
    )
    parser.add_argument(
        "--controller-name",
        default=DEFAULT_CONTROLLER,
        metavar="DOMAIN/NAME",
        help=(
            "handle only FileCleanups whose spec.managedBy is this (unset counts as the default, "
            "%(default)s): one name per installation, so that two never act on the same object"
        ),
    )
    election = parser.add_argument_group(
        "leader election",
        "With several replicas, only the one holding a coordination.k8s.io Lease works; the others stand "
        "by and take over when it stops (at once) or dies (after the lease duration).",
    )
    election.add_argument("--leader-elect", action="store_true", help="work only while holding the Lease")
    election.add_argument(
        "--leader-election-id", default="filecleanup-operator", metavar="NAME", help="the Lease's name"
    )
    election.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE"),
        metavar="NAMESPACE",
        help="the Lease's namespace (default: $POD_NAMESPACE, the pod's own)",
    )
    election.add_argument(
        "--lease-duration",
        type=float,
        default=LeaseTiming.duration_seconds,
        metavar="SECONDS",
        help="how long a Lease not renewed is still taken for held (default: %(default)s)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=LeaseTiming.renew_deadline_seconds,
        metavar="SECONDS",
        help="how long the holder keeps working without renewing, before it exits (default: %(default)s)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=LeaseTiming.retry_period_seconds,
        metavar="SECONDS",
        help="how often candidates try and the holder renews (default: %(default)s)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_SECONDS,
        metavar="SECONDS",
        help=(
            "on SIGTERM, how long the storage calls in flight may take to finish and be recorded; keep it "
            "below the pod's termination grace period (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--pause-file",
        type=Path,
        metavar="PATH",
        help=(
            "an operator-wide pause, switched without a restart: a file holding 'all' or storage names "
            "(read every --pause-poll-seconds; the chart mounts a ConfigMap key); the objects on a paused "
            "storage get no new calls and show reason OperatorPaused"
        ),
    )
    parser.add_argument(
        "--pause-poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        metavar="SECONDS",
        help="how often the pause file is read (default: %(default)s)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    # In a pod, the kubelet's probes and Prometheus come over the pod's network; on a workstation,
    # nothing outside it should reach the operator's endpoints.
    host = "0.0.0.0" if os.environ.get("KUBERNETES_SERVICE_HOST") else "127.0.0.1"  # noqa: S104
    args.liveness = args.liveness or f"{host}:8080"
    args.metrics = args.metrics or f"{host}:9090"
    if args.leader_elect and not args.leader_election_namespace:
        parser.error("--leader-elect needs --leader-election-namespace (or POD_NAMESPACE)")
    return args


def replica_identity() -> str:
    """Who this process is to its peers, as client-go builds it: the pod's name (the chart sets
    POD_NAME through the downward API) or the host, and a random suffix, so that a container restarted
    in the same pod is a new candidate, not the dead holder. Never the user name: in a container, an
    arbitrary UID has no passwd entry, and Kopf's own fallback (``getpass.getuser()``) crashes."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        timing = LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
    except (ConfigError, ValueError) as error:
        print(f"filecleanup-operator: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_BAD_SETUP
    if not os.environ.get("KUBERNETES_SERVICE_HOST") and not kube.kubeconfig_files(None):
        # Kopf would retry its login for ever, a traceback at each try: say once what is missing.
        where = os.environ.get("KUBECONFIG") or kube.DEFAULT_KUBECONFIG
        print(  # noqa: T201
            f"filecleanup-operator: no kubeconfig found (looked for {where}), and not in a pod: "
            "set KUBECONFIG",
            file=sys.stderr,
        )
        return EXIT_BAD_SETUP
    import filecleanup.controller.handlers  # noqa: F401, PLC0415  (registers the handlers)

    configure_logging(args.log_format, verbose=args.verbose)
    return asyncio.run(run(args, config, timing))


def configure_logging(log_format: str, *, verbose: bool) -> None:
    """Log lines about an object name it: a plain line starts with ``[namespace/name]``, a JSON line
    carries it as ``object``."""
    json_lines = log_format == "json"
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if json_lines else kopf.LogFormat.FULL,
        log_prefix=not json_lines,  # a JSON line has its "object" field: the prefix would say it twice
    )
    # One line per storage call is noise, and the HTTP and signing libraries' debug lines quote request
    # headers (a bearer token, an S3 session token): they log warnings at most, even with --verbose.
    for library in ("httpx", "httpcore", "h11", "botocore", "urllib3", "azure", "msal"):
        logging.getLogger(library).setLevel(logging.WARNING)
    redaction.install_log_filter()
    kopf_logs.install()


async def run(args: argparse.Namespace, config: OperatorConfig, timing: LeaseTiming) -> int:
    """Serve liveness and metrics at once (a standby is alive too), wait for the Lease if elected,
    then run Kopf until SIGTERM or until the Lease is lost."""
    metrics = Metrics()
    if args.metrics != "off":
        try:
            metrics.serve(args.metrics)
        except OSError as error:  # a port in use will not free itself: stop with the reason
            print(f"filecleanup-operator: cannot serve metrics at {args.metrics}: {error}", file=sys.stderr)  # noqa: T201
            return EXIT_BAD_SETUP
    identity = replica_identity()
    elector: LeaderElector | None = None
    ready = asyncio.Event()  # Kopf has started: this replica works
    async with contextlib.AsyncExitStack() as stack:
        if args.liveness != "off":
            await stack.enter_async_context(probe_server(args.liveness, ready))
        if args.leader_elect:
            api = await kube.connect()
            stack.push_async_callback(api.close)
            elector = LeaderElector(
                api, args.leader_election_namespace, args.leader_election_id, identity, timing
            )
            stack.push_async_callback(elector.release)
            if not await until_stopped(elector.acquire()):
                return 0
            metrics.leader.set(1)
        insights = references.Insights()
        if args.namespaces:
            namespace_api = await kube.connect()
            stack.push_async_callback(namespace_api.close)
            relisting = asyncio.create_task(namespaces.relist(namespace_api, args.namespaces, insights))
            stack.callback(relisting.cancel)
        operator = asyncio.create_task(
            kopf.operator(
                insights=insights,
                identity=identity,  # type: ignore[arg-type]  # a NewType of str kopf does not export
                standalone=True,  # one replica works: the Lease decides which
                clusterwide=not args.namespaces,
                namespaces=args.namespaces or (),
                ready_flag=ready,
                memo=Runtime(
                    config=config,
                    metrics=metrics,
                    watches_namespace_globs=any(set("*?[") & set(ns) for ns in args.namespaces or ()),
                    shutdown_seconds=args.shutdown_timeout,
                    controller_name=args.controller_name,
                    namespaces=args.namespaces or [],
                    identity=identity,
                    pause=PauseSwitch(args.pause_file, config.storages, metrics),
                    pause_poll_seconds=args.pause_poll_seconds,
                ),
            )
        )
        if elector is None:
            metrics.leader.set(1)
            await operator
            return 0
        holding = asyncio.create_task(elector.hold())
        await asyncio.wait({operator, holding}, return_when=asyncio.FIRST_COMPLETED)
        if not holding.done():
            holding.cancel()
            await operator
            return 0
        lost = holding.exception()
        logger.error("Stopping: %s", lost if isinstance(lost, LostLease) else repr(lost))
        elector.holding = False  # not ours any more: nothing to release
        metrics.leader.set(0)
        # Cancelling Kopf is its own way to stop: a round in progress still lets its calls in flight
        # finish and records them. (A stop flag would leave one of Kopf's waiters hanging for 5 s.)
        operator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await operator
        return EXIT_LOST_LEASE
    return 0


async def until_stopped(work: Awaitable[None]) -> bool:
    """Run ``work`` until it finishes (True) or SIGTERM/SIGINT arrives first (False)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    task = asyncio.ensure_future(work)
    waiter = asyncio.create_task(stopped.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if task.done():
        task.result()
        return True
    task.cancel()
    return False


@contextlib.asynccontextmanager
async def probe_server(address: str, ready: asyncio.Event) -> AsyncIterator[None]:
    """``/healthz`` (liveness): 200 while the event loop answers, on a standby replica too.
    ``/readyz``: 200 once this replica works (holds the Lease and Kopf has started), else 503. The
    chart probes liveness only: a readiness probe would keep a standby out of the rollout."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "working": ready.is_set()})

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"working": ready.is_set()}, status=200 if ready.is_set() else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = address.rpartition(":")
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()  # noqa: S104
    try:
        yield
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
