"""``python -m filecleanup`` / ``filecleanup-operator``: run the operator."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from pathlib import Path

import kopf

from filecleanup.config import CONFIG_ENV, ConfigError, load_config


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
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="serve the liveness probe at http://HOST:PORT/healthz; 'off' disables it (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics",
        default="0.0.0.0:9090",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics; 'off' disables it (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format", choices=["plain", "json"], default="plain", help="log line format (default: plain)"
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help=(
            "run as one of several replicas: only the longest-running one works, the others stand by and "
            "take over when it stops (Kopf peering, through the KopfPeering or ClusterKopfPeering NAME)"
        ),
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        metavar="SECONDS",
        help="how long a replica that stopped answering is still taken for alive (default: %(default)s)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def replica_identity() -> str:
    """Who this replica is to its peers: the pod's name (the chart sets POD_NAME through the downward
    API), else the host and process. Never the user name: in a container, an arbitrary UID has no
    passwd entry, and Kopf's own fallback (``getpass.getuser()``) then crashes at start-up."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"filecleanup-operator: {error}", file=sys.stderr)  # noqa: T201
        return 2
    import filecleanup.handlers  # noqa: F401, PLC0415  (registers the handlers)

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    # One line per storage call is noise; the engine logs what matters per object.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    kopf.run(
        identity=replica_identity(),  # type: ignore[arg-type]  # a NewType of str kopf does not export
        standalone=args.peering is None,
        peering_name=args.peering,
        # The earlier a replica started, the higher its priority: a restarted one never preempts the one
        # at work, and stands by instead.
        priority=-time.time_ns() // 1_000_000,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=None if args.liveness == "off" else f"http://{args.liveness}/healthz",
        memo=kopf.Memo(
            config=config,
            peering_lifetime=args.peering_lifetime if args.peering else None,
            clusterwide=not args.namespaces,
            metrics_address=None if args.metrics == "off" else args.metrics,
            watches_namespace_globs=any(set("*?[") & set(namespace) for namespace in args.namespaces or ()),
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
