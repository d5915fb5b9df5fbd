"""``filecleanup``: submit, follow and redrive album cleanups, and relay an album service's outbox.

It talks to the cluster in the current kubeconfig (KUBECONFIG), or the in-cluster service account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

from kubernetes.aio.client import ApiException
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from filecleanup.client import FileCleanupClient, ObjectSummary, SubmitConflict
from filecleanup.config import ConfigError, load_config
from filecleanup.outbox import DAY, Outbox, Relay, State, connect_url
from filecleanup.storage import open_storage
from filecleanup.storage.base import ObjectStore, StorageUnavailable

EXAMPLES = """\
examples:
  filecleanup submit --album 42 --keys-file keys.txt --namespace photos
  filecleanup submit --album 7 --keys-file big.txt --storage-config operator.yaml  # a manifest if big
  filecleanup status --namespace photos              # every FileCleanup in the namespace
  filecleanup status --album 42 --namespace photos   # one album, all of its parts
  filecleanup retry album-42 --namespace photos      # redrive a Failed one: only its failed keys
  filecleanup relay --database sqlite:///albums.db   # drain an album service's outbox
  filecleanup outbox list --database sqlite:///albums.db          # the rows set aside as dead
  filecleanup outbox redrive --all --database sqlite:///albums.db # once their cause is fixed
"""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="filecleanup",
        description=(
            "Delete an album's storage keys through FileCleanup objects, follow their progress, and redrive "
            "the ones that failed. Uses the current kubeconfig (KUBECONFIG) or the in-cluster account."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser(
        "submit",
        help="create the FileCleanup(s) for an album's keys; safe to repeat",
        description=(
            "Create the FileCleanup objects for an album: album-<id>, or album-<id>-0, -1, ... when the keys "
            "need more than one object (10,000 keys or about 1.4 MB each). Submitting the same keys again "
            "succeeds and changes nothing; different keys for an album that exists is an error."
        ),
    )
    submit.add_argument("--album", required=True, help="the album id (letters, digits, '-', '_', '.')")
    submit.add_argument(
        "--keys-file", required=True, type=Path, help="storage keys, one per line ('-' reads standard input)"
    )
    submit.add_argument(
        "--storage", help="a storage named in the operator configuration (default: its default)"
    )
    submit.add_argument(
        "--namespace", "-n", default="default", help="namespace of the objects (default: default)"
    )
    submit.add_argument(
        "--storage-config",
        type=Path,
        metavar="FILE",
        help=(
            "an operator configuration file (the storages' addresses and credential files): keys that need "
            "more than one object are then written to the storage as one manifest, and one small object "
            "points to it"
        ),
    )

    status = commands.add_parser("status", help="a table of FileCleanups and their progress")
    status.add_argument("--album", help="only this album's objects, with a total line")
    status.add_argument("--namespace", "-n", default="default", help="namespace (default: default)")
    status.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")

    retry = commands.add_parser(
        "retry",
        help="redrive a Failed FileCleanup: only its failed keys, with a fresh retry budget",
        description=(
            "Redrive a Failed FileCleanup: the operator deletes its "
            "failed keys again with a fresh retry budget, records it in status.redrives and posts a "
            "Redriven event. It sets spec.retryNonce to a new value."
        ),
    )
    retry.add_argument("name", help="the FileCleanup's name, e.g. album-42")
    retry.add_argument("--namespace", "-n", default="default", help="namespace (default: default)")

    relay = commands.add_parser(
        "relay",
        help="drain an album service's outbox table into FileCleanups",
        description=(
            "Submit the rows of the filecleanup_outbox table, marking each delivered once the API server "
            "has accepted its objects; rows that fail wait with back-off. Runs until interrupted."
        ),
    )
    relay.add_argument("--database", required=True, help="sqlite:///path/to.db or postgresql://user@host/db")
    relay.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    relay.add_argument(
        "--poll-seconds", type=float, default=1.0, help="wait between polls of an empty outbox"
    )
    relay.add_argument(
        "--retention-days", type=float, default=7.0, help="delete delivered rows this much later (default: 7)"
    )
    relay.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics of the outbox (rows by state, the oldest pending row's age)",
    )

    outbox = commands.add_parser(
        "outbox",
        help="list an outbox's rows, and redrive the dead ones",
        description=(
            "Rows that can never succeed as they are (a conflicting FileCleanup, keys or an album id the "
            "API server refuses) are set aside as dead, with the reason. List them, fix the cause, then "
            "redrive them: they are pending again, due at once."
        ),
    )
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="a table of the rows (default: the dead ones)")
    listing.add_argument(
        "--database", required=True, help="sqlite:///path/to.db or postgresql://user@host/db"
    )
    listing.add_argument(
        "--state", choices=[state.value for state in State], default=State.DEAD.value, help="(default: dead)"
    )
    redrive = actions.add_parser("redrive", help="dead rows back to pending")
    redrive.add_argument(
        "--database", required=True, help="sqlite:///path/to.db or postgresql://user@host/db"
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], help="the rows' ids", metavar="ID")
    which.add_argument("--all", action="store_true", help="every dead row")
    return root


def read_keys(path: Path) -> list[str]:
    """One key per line, exactly as written. Lines end at a line feed only: a key may hold any other
    character the API accepts (a trailing space, U+2028, U+0085, ...), and changing a key would delete
    the wrong file. A carriage return before the line feed (Windows line ends) and empty lines are
    dropped, nothing else."""
    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 at byte {error.start}") from error
    return [line.removesuffix("\r") for line in text.split("\n") if line.removesuffix("\r")]


def table(summaries: Sequence[ObjectSummary], *, with_namespace: bool) -> str:
    header = ["NAME", "ALBUM", "PHASE", "PROGRESS", "TOTAL", "DELETED", "FAILED", "RETRIES"]
    if with_namespace:
        header.insert(0, "NAMESPACE")
    rows = [header]
    for item in summaries:
        percent = f"{100 * item.deleted // item.total}%" if item.total else "-"
        row = [item.name, item.album or "-", item.phase, percent, str(item.total), str(item.deleted)]
        row += [str(item.failed), str(item.retries)]
        rows.append([item.namespace, *row] if with_namespace else row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def submit(client: FileCleanupClient, args: argparse.Namespace) -> int:
    keys = read_keys(args.keys_file)
    if args.storage_config is None:
        names = await client.submit(args.album, keys, namespace=args.namespace, storage=args.storage)
    else:
        async with manifest_store(args.storage_config, args.storage) as store:
            names = await client.submit(
                args.album, keys, namespace=args.namespace, storage=args.storage, manifest_store=store
            )
    print(f"album {args.album}: {len(set(keys))} keys in {len(names)} FileCleanup(s): {', '.join(names)}")
    return 0


@contextlib.asynccontextmanager
async def manifest_store(config_path: Path, name: str | None) -> AsyncIterator[ObjectStore]:
    """The named storage (or the configuration's default) opened from an operator configuration file,
    for writing a manifest."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise ValueError(str(error)) from error
    name = name or config.default_storage
    if name not in config.storages:
        raise ValueError(f"{config_path}: no storage {name!r} (it has {', '.join(sorted(config.storages))})")
    storage = open_storage(name, config.storages[name])
    try:
        if not storage.holds_manifests:
            raise ValueError(f"storage {name!r} cannot hold manifests (an HTTP storage needs objectsUrl)")
        yield cast("ObjectStore", storage)
    finally:
        await storage.aclose()


async def status(client: FileCleanupClient, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else args.namespace
    if args.album is None:
        objects = await client.list_cleanups(namespace=namespace)
        print(table([ObjectSummary.from_object(obj) for obj in objects], with_namespace=namespace is None))
        return 0
    album = await client.status(args.album, namespace=args.namespace)
    print(table(album.objects, with_namespace=False))
    print(
        f"\nalbum {album.album}: {album.phase}, {album.deleted} of {album.total} keys deleted, "
        f"{album.failed} failed, {len(album.objects)} of {album.parts} part(s) found"
    )
    return 0 if album.objects else 1


async def retry(client: FileCleanupClient, args: argparse.Namespace) -> int:
    await client.retry(args.name, namespace=args.namespace)
    print(
        f"{args.namespace}/{args.name}: redrive requested; follow it: filecleanup status -n {args.namespace}"
    )
    return 0


async def relay(client: FileCleanupClient, args: argparse.Namespace) -> int:
    connect, dialect = connect_url(args.database)
    outbox = Relay(
        connect, dialect, client, poll_seconds=args.poll_seconds, retention_seconds=args.retention_days * DAY
    )
    if args.metrics:
        serve_outbox_metrics(outbox.outbox, args.metrics)
    if args.once:
        print(f"delivered {await outbox.run_once()} outbox row(s)")
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await outbox.run(stop)
    return 0


def outbox(args: argparse.Namespace) -> int:
    """The outbox's rows, or a redrive of its dead ones: no API server needed."""
    rows = Outbox(*connect_url(args.database))
    if args.action == "redrive":
        print(f"redriven: {rows.redrive(None if args.all else args.ids)} dead row(s) pending again")
        return 0
    listed = rows.rows(State(args.state))
    table_rows = [["ID", "ALBUM", "NAMESPACE", "STATE", "ATTEMPTS", "CREATED", "LAST ERROR"]]
    for row in listed:
        created = datetime.datetime.fromtimestamp(row.created_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        table_rows.append(
            [
                str(row.id),
                row.album_id,
                row.namespace,
                row.state,
                str(row.attempts),
                created,
                row.last_error or "",
            ]
        )
    widths = [max(len(r[column]) for r in table_rows) for column in range(len(table_rows[0]))]
    for row_cells in table_rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row_cells, widths, strict=True)).rstrip())
    return 0


def serve_outbox_metrics(rows: Outbox, address: str) -> None:
    """Rows by state and the oldest pending row's age, read from the database at each scrape."""

    class OutboxCollector(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            counts = rows.counts()
            by_state = GaugeMetricFamily("filecleanup_outbox_rows", "Outbox rows by state", labels=["state"])
            for state, count in (
                ("pending", counts.pending),
                ("dead", counts.dead),
                ("delivered", counts.delivered),
            ):
                by_state.add_metric([state], count)
            yield by_state
            yield GaugeMetricFamily(
                "filecleanup_outbox_oldest_pending_seconds",
                "Age of the oldest pending outbox row (0 when none is pending)",
                value=counts.oldest_pending_seconds,
            )

    registry = CollectorRegistry()
    registry.register(OutboxCollector())
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)  # noqa: S104


COMMANDS: dict[str, Callable[[FileCleanupClient, argparse.Namespace], Awaitable[int]]] = {
    "submit": submit,
    "status": status,
    "retry": retry,
    "relay": relay,
}


async def run(args: argparse.Namespace) -> int:
    if args.command == "outbox":
        return outbox(args)
    async with await FileCleanupClient.connect() as client:
        return await COMMANDS[args.command](client, args)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return asyncio.run(run(args))
    except (ValueError, SubmitConflict, OSError, StorageUnavailable) as error:
        print(f"filecleanup: {error}", file=sys.stderr)
    except ApiException as error:
        print(f"filecleanup: the API server answered {error.status} {error.reason}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
