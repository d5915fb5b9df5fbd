"""Layer album. The outbox's commands of ``filecleanup``: ``relay`` drains an album service's outbox table
into FileCleanups; ``outbox init`` makes the table, ``outbox list|redrive`` looks after the rows set aside
as dead."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
from collections.abc import Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from filecleanup.album.client import FileCleanupClient
from filecleanup.album.outbox import DAY, TABLE, Outbox, OutboxMissing, Relay, State, connect_url
from filecleanup.album.tables import columns
from filecleanup.api.wording import plural

ParserT = TypeVar("ParserT", bound=argparse.ArgumentParser)


def add_commands(commands: argparse._SubParsersAction[ParserT]) -> None:
    relay = commands.add_parser(
        "relay",
        help="drain an album service's outbox table into FileCleanups",
        description=(
            "Submit the rows of the filecleanup_outbox table, marking each delivered once the API server "
            "has accepted its objects; rows that fail wait with back-off. Runs until interrupted. The table "
            "must be there: 'filecleanup outbox init' makes it."
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
        help="make an outbox's table, list its rows, and redrive the dead ones",
        description=(
            "'init' makes the outbox table (or brings one an older version made up to date); the other "
            "commands and the relay need it there. Rows that can never succeed as they are (a conflicting "
            "FileCleanup, keys or an album id the API server refuses) are set aside as dead, with the "
            "reason. List them, fix the cause, then redrive them: they are pending again, due at once."
        ),
    )
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init", help="make the outbox table (and a SQLite database file); safe to repeat"
    )
    init.add_argument("--database", required=True, help="sqlite:///path/to.db or postgresql://user@host/db")
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


def opened(url: str) -> Outbox:
    """The outbox at ``url``, whose table ``outbox init`` made: else :class:`OutboxMissing`, naming it."""
    rows = Outbox(*connect_url(url))
    if not rows.has_table():
        raise OutboxMissing(
            f"{url} has no outbox table ({TABLE}): make it with filecleanup outbox init --database {url}"
        )
    return rows


async def relay(client: FileCleanupClient, args: argparse.Namespace) -> int:
    await asyncio.to_thread(opened, args.database)
    connect, dialect = connect_url(args.database)
    outbox = Relay(
        connect, dialect, client, poll_seconds=args.poll_seconds, retention_seconds=args.retention_days * DAY
    )
    if args.metrics:
        serve_outbox_metrics(outbox.outbox, args.metrics)
    if args.once:
        print(f"delivered {plural(await outbox.run_once(), 'outbox row')}")
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await outbox.run(stop)
    return 0


def outbox(args: argparse.Namespace) -> int:
    """The outbox's table made, its rows, or a redrive of its dead ones: no API server needed."""
    if args.action == "init":
        Outbox(*connect_url(args.database, create=True)).create()
        print(f"outbox table {TABLE} ready in {args.database}")
        return 0
    rows = opened(args.database)
    if args.action == "redrive":
        print(f"redriven: {plural(rows.redrive(None if args.all else args.ids), 'dead row')} pending again")
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
    print(columns(table_rows))
    return 0


class OutboxCollector(Collector):
    """Rows by state and the oldest pending row's age, read from the database at each scrape."""

    def __init__(self, rows: Outbox) -> None:
        self._rows = rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._rows.counts()
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


def serve_outbox_metrics(rows: Outbox, address: str) -> None:
    registry = CollectorRegistry()
    registry.register(OutboxCollector(rows))
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)  # noqa: S104
