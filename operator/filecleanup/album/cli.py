"""Layer album. ``filecleanup``: submit, follow and redrive album cleanups, and relay an album service's
outbox.

It finds the cluster as kubectl does: ``--kubeconfig``, else KUBECONFIG, else ~/.kube/config, with
``--context`` or the current context, whose namespace is the default; only without any of them, in a
pod, its service account.
Installed as ``kubectl-filecleanup`` too, it is the kubectl plugin ``kubectl filecleanup``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn

import yaml
from kubernetes.aio.client import ApiException
from kubernetes.aio.config import ConfigException

from filecleanup import __version__
from filecleanup.album import cli_outbox
from filecleanup.album.client import FileCleanupClient, ObjectSummary, SubmitConflict
from filecleanup.album.outbox import OutboxMissing
from filecleanup.album.tables import columns, printable
from filecleanup.api import kube
from filecleanup.api.config import ConfigError, load_config
from filecleanup.api.keys import strip_bom
from filecleanup.api.models import GROUP, PLURAL, FileCleanupStatus, Phase, ReceiptPlace
from filecleanup.api.wording import agreeing, plural
from filecleanup.decide import receipts
from filecleanup.decide.failed_errors import expand
from filecleanup.storage.base import ObjectStore, StorageUnavailable
from filecleanup.storage.opening import open_storage

EXAMPLES = """\
examples:
  filecleanup submit --album 42 --keys-file keys.txt --namespace photos
  filecleanup submit --album 7 --keys-file big.txt --storage-config operator.yaml  # a manifest if big
  filecleanup status -n photos                       # every FileCleanup in the namespace
  filecleanup status -A -o yaml                      # every namespace, as YAML
  filecleanup status --album 42 -n photos            # one album, all of its parts
  filecleanup wait album-42 -n photos --timeout 10m  # exit 0 Succeeded, 1 Failed, 2 timed out, ...
  filecleanup submit --album 42 --keys-file keys.txt -n photos --grace 7d  # undoable for 7 days
  filecleanup undo album-42 -n photos                # cancel it while it waits: nothing deleted
  filecleanup retry album-42 -n photos               # redrive a Failed one: only its failed keys
  filecleanup failed album-42 -n photos              # every failed key with its error (key<TAB>error)
  filecleanup receipt show album-42 -n photos --storage-config operator.yaml  # what it deleted
  filecleanup receipt verify receipt.json --key-file receipt-key --keys-file keys.txt
  filecleanup outbox init --database sqlite:///albums.db          # make the outbox table, once
  filecleanup relay --database sqlite:///albums.db   # drain an album service's outbox
  filecleanup outbox list --database sqlite:///albums.db          # the rows set aside as dead
  filecleanup outbox redrive --all --database sqlite:///albums.db # once their cause is fixed

global flags (--kubeconfig, --context) go before or after the command, as kubectl's do.

exit codes:
  0  done
  1  wait: the FileCleanup ended Failed (status --album: no object of the album found)
  2  wait: --timeout passed first; other commands: an error (the API server refused, a conflict, ...)
  3  wait: the FileCleanup does not exist
  4  a usage or configuration error (a bad flag, no kubeconfig, no outbox table); wait: any other error too
"""

# Exit codes, as the epilog above lists them.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMED_OUT = 2
EXIT_NOT_FOUND = 3
EXIT_USAGE = 4


class Parser(argparse.ArgumentParser):
    """argparse's parser, exiting with the usage error's own code (argparse's 2 would read as wait's
    timeout)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    root = Parser(
        prog=program_name(),
        description=(
            "Delete an album's storage keys through FileCleanup objects, follow their progress, and redrive "
            "the ones that failed. Finds the cluster as kubectl does: --kubeconfig, else KUBECONFIG, else "
            "~/.kube/config; without any, in a pod, its service account."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_cluster_flags(root, default=None)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser(
        "submit",
        help="create the FileCleanup(s) for an album's keys; safe to repeat",
        description=(
            "Create the FileCleanup objects for an album: album-<id>, or album-<id>-0, -1, ... when the keys "
            "need more than one object (10,000 keys or about 1.3 MB each). Submitting the same keys again "
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
    add_namespace(submit)
    submit.add_argument(
        "--grace",
        type=duration,
        metavar="DURATION",
        help=(
            "a grace period, e.g. 7d: nothing is deleted before it ends, and `undo` cancels the objects "
            "until then (spec.startAfter)"
        ),
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
    add_namespace(status)
    status.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    status.add_argument(
        "--output", "-o", choices=["table", "json", "yaml"], default="table", help="(default: table)"
    )
    status.add_argument(
        "--show-managed-fields",
        action="store_true",
        help="keep metadata.managedFields in -o json and -o yaml (left out by default, as kubectl does)",
    )

    wait = commands.add_parser(
        "wait",
        help="wait until a FileCleanup finishes: exit 0 done, 1 Failed, 2 timed out, 3 not found",
        description=(
            "Wait until the FileCleanup is Succeeded, or Checked for a dry run (exit 0), or Failed "
            "(exit 1); exit 2 when --timeout passes first, 3 when the object does not exist, 4 on a "
            "usage or configuration error (or any other error). kubectl wait --for=condition=Complete "
            "cannot stop on a failure; this can."
        ),
    )
    wait.add_argument("name", help="the FileCleanup's name, e.g. album-42")
    add_namespace(wait)
    wait.add_argument("--timeout", type=duration, default=300.0, help="e.g. 90s, 10m, 1h (default: 5m)")

    undo = commands.add_parser(
        "undo",
        help="cancel a FileCleanup that waits for its start (submit --grace): nothing is deleted",
        description=(
            "Delete a FileCleanup that is waiting for its grace period to end (spec.startAfter) and has "
            "sent nothing to the storage; say what it kept. The delete is conditional on the version read, "
            "so an object that started meanwhile is left alone, and this says so."
        ),
    )
    undo.add_argument("name", help="the FileCleanup's name, e.g. album-42")
    add_namespace(undo)

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
    add_namespace(retry)

    failed = commands.add_parser(
        "failed",
        help="every failed key of a FileCleanup with its latest error, one per line (key<TAB>error)",
        description=(
            "List every failed key of a FileCleanup with its latest error, beyond the 100 of "
            "status.failedKeys: the keys are expanded from status.failedErrors (failed keys grouped by "
            "error, as index ranges into spec.keys). A manifest's failed keys are in its report in the "
            "storage; this names it."
        ),
    )
    failed.add_argument("name", help="the FileCleanup's name, e.g. album-42")
    add_namespace(failed)

    receipt = commands.add_parser(
        "receipt",
        help="show and verify erasure receipts: what a finished FileCleanup deleted, signed",
        description=(
            "An erasure receipt is a signed JSON record of what a finished FileCleanup deleted, kept in the "
            "storage after the object is gone. 'show' reads a FileCleanup's receipt from its storage; "
            "'verify' checks a receipt's signature with the operator's receipt key and, given the keys, "
            "that it is about exactly those keys."
        ),
    )
    actions = receipt.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="a FileCleanup's receipt, as text or JSON")
    show.add_argument("name", nargs="?", help="the FileCleanup's name, e.g. album-42 (while it exists)")
    show.add_argument(
        "--key",
        help=(
            "the receipt's key instead, once its FileCleanup is gone: "
            "<prefix><namespace>/<album>/<name>/<uid>.json"
        ),
    )
    show.add_argument(
        "--storage", help="with --key: the storage that holds it (default: the receipts storage)"
    )
    add_namespace(show)
    show.add_argument(
        "--storage-config",
        type=Path,
        required=True,
        metavar="FILE",
        help="an operator configuration file: where the receipts storage is, and its credential files",
    )
    show.add_argument("--key-file", type=Path, help="the receipt key: check the signature too")
    show.add_argument("--output", "-o", choices=["text", "json"], default="text", help="(default: text)")
    verify = actions.add_parser(
        "verify", help="check a receipt: exit 0 if it is signed with the key (and about the keys), else 1"
    )
    verify.add_argument("file", type=Path, help="the receipt ('-' reads standard input)")
    verify.add_argument("--key-file", type=Path, required=True, help="the receipt key (a Secret's file)")
    verify.add_argument("--keys-file", type=Path, help="the keys it should be about, one per line")

    cli_outbox.add_commands(commands)
    add_cluster_flags(commands.choices["relay"])
    return root


def add_namespace(command: argparse.ArgumentParser) -> None:
    """-n, and the cluster's flags: a command with a namespace reaches the cluster."""
    command.add_argument("--namespace", "-n", help="namespace (default: the kubeconfig context's)")
    add_cluster_flags(command)


def add_cluster_flags(command: argparse.ArgumentParser, default: str | None = argparse.SUPPRESS) -> None:
    """--kubeconfig and --context, on the root parser (``default`` None) and again on each command that
    reaches the cluster, as kubectl takes its global flags anywhere. A command's copy sets nothing
    unless given (argparse.SUPPRESS), so that it does not undo the flag given before the command."""
    command.add_argument(
        "--kubeconfig", default=default, help="the kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
    )
    command.add_argument(
        "--context", default=default, help="the kubeconfig context (default: the current one)"
    )


def duration(text: str) -> float:
    """Seconds from kubectl's duration forms, and days: 90, 90s, 10m, 1h, 7d."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 10m, 1h, 7d)") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r}")
    return seconds


def program_name() -> str:
    """``kubectl filecleanup`` when kubectl runs it as a plugin, as kubectl's own messages say."""
    invoked = Path(sys.argv[0]).name
    return "kubectl filecleanup" if invoked == "kubectl-filecleanup" else "filecleanup"


def read_keys(path: Path) -> list[str]:
    """One key per line, exactly as written. Lines end at a line feed only: a key may hold any other
    character the API accepts (a trailing space, U+2028, U+0085, ...), and changing a key would delete
    the wrong file. A byte order mark at the start of the file, a carriage return before the line feed
    (Windows line ends) and empty lines are dropped, nothing else."""
    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 at byte {error.start}") from error
    lines = strip_bom(text).split("\n")
    return [line.removesuffix("\r") for line in lines if line.removesuffix("\r")]


def table(summaries: Sequence[ObjectSummary], *, with_namespace: bool) -> str:
    header = ["NAME", "ALBUM", "PHASE", "PROGRESS", "TOTAL", "DELETED", "FAILED", "RETRIES", "REDRIVES"]
    if with_namespace:
        header.insert(0, "NAMESPACE")
    rows = [header]
    for item in summaries:
        percent = f"{100 * item.deleted // item.total}%" if item.total else "-"
        percent = "dry-run" if item.dry_run else percent  # deletes nothing: see its status.dryRun
        row = [item.name, item.album or "-", item.phase, percent, str(item.total), str(item.deleted)]
        row += [str(item.failed), str(item.retries), str(item.redrives)]
        rows.append([item.namespace, *row] if with_namespace else row)
    return columns(rows)


async def submit(client: FileCleanupClient, args: argparse.Namespace) -> int:
    keys = read_keys(args.keys_file)
    start_after = None
    if args.grace is not None:
        start_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=args.grace)
    options = {"namespace": args.namespace, "storage": args.storage, "start_after": start_after}
    if args.storage_config is None:
        names = await client.submit(args.album, keys, **options)
    else:
        async with object_store(args.storage_config, args.storage) as store:
            names = await client.submit(args.album, keys, manifest_store=store, **options)
    counted = f"{plural(len(set(keys)), 'key')} in {plural(len(names), 'FileCleanup')}"
    print(f"album {args.album}: {counted}: {', '.join(names)}")
    if start_after is not None:
        print(
            f"nothing is deleted before {start_after:%Y-%m-%dT%H:%M:%SZ}; until then: filecleanup undo NAME"
        )
    return 0


@contextlib.asynccontextmanager
async def object_store(config_path: Path, name: str | None) -> AsyncIterator[ObjectStore]:
    """The named storage (or the configuration's default) opened from an operator configuration file,
    for writing a manifest or reading a receipt."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise ValueError(str(error)) from error
    name = name or config.default_storage
    if name not in config.storages:
        raise ValueError(f"{config_path}: no storage {name!r} (it has {', '.join(sorted(config.storages))})")
    storage = open_storage(name, config.storages[name])
    try:
        store = storage if isinstance(storage, ObjectStore) else None
        if store is None:
            raise ValueError(
                f"storage {name!r} cannot hold manifests or receipts: it holds no objects (an HTTP storage "
                "needs objectsUrl)"
            )
        yield store
    finally:
        await storage.aclose()


async def status(client: FileCleanupClient, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else args.namespace
    if args.output != "table":
        objects = await client.list_cleanups(namespace=namespace, album_id=args.album)
        if not args.show_managed_fields:
            objects = [without_managed_fields(obj) for obj in objects]
        listing = {"apiVersion": "v1", "kind": "List", "items": objects}
        print(
            json.dumps(listing, indent=2)
            if args.output == "json"
            else yaml.safe_dump(listing, sort_keys=False)
        )
        return 0
    if args.album is None:
        objects = await client.list_cleanups(namespace=namespace)
        print(table([ObjectSummary.from_object(obj) for obj in objects], with_namespace=namespace is None))
        return 0
    album = await client.status(args.album, namespace=args.namespace)
    print(table(album.objects, with_namespace=False))
    summary = (
        f"album {album.album}: {album.phase}, {album.deleted} of {plural(album.total, 'key')} deleted, "
        f"{album.failed} failed, {len(album.objects)} of {plural(album.parts, 'part')} found"
    )
    print(f"\n{printable(summary)}")
    return 0 if album.objects else 1


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without metadata.managedFields: the API server's bookkeeping of who set which field,
    often longer than the rest of the object."""
    metadata = {key: value for key, value in obj["metadata"].items() if key != "managedFields"}
    return {**obj, "metadata": metadata}


async def undo(client: FileCleanupClient, args: argparse.Namespace) -> int:
    undone = await client.undo(args.name, namespace=args.namespace)
    kept = (
        f"the keys listed in manifest {undone.manifest}"
        if undone.manifest
        else f"its {plural(undone.keys, 'key')}"
    )
    print(
        printable(
            f"{args.namespace}/{args.name}: undone before its start at {undone.start_after}; nothing was "
            f"sent to the storage, {kept} are kept"
        )
    )
    return 0


async def retry(client: FileCleanupClient, args: argparse.Namespace) -> int:
    await client.retry(args.name, namespace=args.namespace)
    print(
        f"{args.namespace}/{args.name}: redrive requested; follow it: filecleanup status -n {args.namespace}"
    )
    return 0


async def failed(client: FileCleanupClient, args: argparse.Namespace) -> int:
    """Exit 0 with the list (possibly empty); a manifest object's list is in the storage."""
    obj = await client.get(args.name, namespace=args.namespace)
    status = FileCleanupStatus.model_validate(obj.get("status") or {})
    if status.manifest is not None:
        report = printable(status.manifest.report) or "(none yet)"
        print(
            f"{PLURAL}.{GROUP}/{args.name}: {plural(status.failed, 'failed key')}; a manifest's failure "
            f"report is in its storage, one key and its error per line: {report}*",
            file=sys.stderr,
        )
        return 0
    keys: list[str] = (obj.get("spec") or {}).get("keys") or []
    if status.failed_errors:
        listed = expand(status.failed_errors, keys)
    else:  # written by an operator that kept no failedErrors: the first 100 only
        listed = [(item.key, item.error) for item in status.failed_keys]
    for key, error in listed:  # escaped apart: a tab or a line feed in either cannot forge a field
        print(f"{printable(key)}\t{printable(error)}")
    missing = status.failed - len(listed)
    if missing > 0:
        print(
            f"{plural(missing, 'more failed key')} {agreeing(missing, 'is', 'are')} not listed in status "
            "(an older operator)",
            file=sys.stderr,
        )
    return 0


WAIT_POLL_SECONDS = 1.0


async def wait(client: FileCleanupClient, args: argparse.Namespace) -> int:
    """Poll the object's phase (one small GET a second) until it finishes or the timeout passes."""
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            obj = await client.get(args.name, namespace=args.namespace)
        except ApiException as error:
            if error.status != HTTPStatus.NOT_FOUND:
                raise
            print(f"error: {printable(api_error(error, args))}", file=sys.stderr)
            return EXIT_NOT_FOUND
        phase = (obj.get("status") or {}).get("phase")
        if phase in {Phase.SUCCEEDED, Phase.CHECKED, Phase.FAILED}:
            print(f"{PLURAL}.{GROUP}/{args.name} {phase}")
            return EXIT_FAILED if phase == Phase.FAILED else EXIT_OK
        if time.monotonic() >= deadline:
            print(
                printable(
                    f"{PLURAL}.{GROUP}/{args.name}: still {phase or 'Pending'} after {args.timeout:g} s"
                )
            )
            return EXIT_TIMED_OUT
        await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


MAX_RECEIPT_BYTES = 64 * 1024 * 1024  # 10,000 keys of 1,024 characters, with room to spare
RECEIPT_PART_BYTES = 1024 * 1024


def receipt_secret(path: Path) -> bytes:
    return path.read_bytes().strip()


def verify_receipt(args: argparse.Namespace) -> int:
    """Exit 0 when the receipt is signed with the key (and is about the keys given); else 1, saying why."""
    data = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    document, problem = receipts.verify(data, receipt_secret(args.key_file))
    if document is not None and args.keys_file is not None:
        problem = receipts.keys_problem(document, read_keys(args.keys_file))
    if problem is not None:
        print(printable(f"{args.file}: NOT a valid receipt: {problem}"))
        return 1
    assert document is not None  # noqa: S101  (no problem: verified)
    about = "its keys match" if args.keys_file is not None else "keys not compared (--keys-file)"
    print(
        printable(f"{args.file}: valid receipt of {describe_subject(document)}; signature verified, {about}")
    )
    return 0


def describe_subject(document: object) -> str:
    uid = at(document, "object", "uid")
    return f"{at(document, 'object', 'namespace')}/{at(document, 'object', 'name')} (uid {uid})"


def at(document: object, *path: str) -> str:
    """The value at ``path`` as text, or "-": a receipt read back is any JSON at all until verified."""
    for part in path:
        if not isinstance(document, dict):
            return "-"
        document = document.get(part)
    return "-" if document is None or isinstance(document, dict | list) else str(document)


async def show_receipt(client: FileCleanupClient, args: argparse.Namespace) -> int:
    if (args.name is None) == (args.key is None):
        raise ValueError("name a FileCleanup, or give --key (the receipt's key), not both")
    if args.key is not None:
        place = ReceiptPlace(storage=args.storage or receipts_storage(args.storage_config), key=args.key)
    else:
        obj = await client.get(args.name, namespace=args.namespace)
        found = FileCleanupStatus.model_validate(obj.get("status") or {}).receipt
        if found is None:
            print(
                f"{args.namespace}/{args.name} has no receipt (not finished, or no receipts configured)",
                file=sys.stderr,
            )
            return 1
        place = found
    async with object_store(args.storage_config, place.storage) as store:
        data = await read_whole(store, place.key)
    document, problem = (
        receipts.verify(data, receipt_secret(args.key_file)) if args.key_file else (None, None)
    )
    if problem is not None:
        print(printable(f"{place.storage}:{place.key}: NOT a valid receipt: {problem}"), file=sys.stderr)
        return 1
    try:
        shown: object = document or json.loads(data)
    except (ValueError, RecursionError):
        print(printable(f"{place.storage}:{place.key}: not a receipt (not JSON)"), file=sys.stderr)
        return 1
    if args.output == "json":
        # A verified receipt is ASCII with JSON's escapes, exactly as stored (it verifies again); any
        # other text is escaped by JSON's rules first.
        sys.stdout.write(data.decode() if document is not None else json.dumps(shown) + "\n")
        return 0
    signature = "verified" if document is not None else "not checked (--key-file)"
    print(printable(receipt_text(shown, f"{place.storage}:{place.key}", signature)))
    return 0


def receipts_storage(config_path: Path) -> str:
    """The storage that keeps the receipts, as the operator configuration names it."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise ValueError(str(error)) from error
    if config.receipts is None or config.receipts.storage is None:
        raise ValueError(f"{config_path} names no receipts storage: give --storage")
    return config.receipts.storage


async def read_whole(store: ObjectStore, key: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        part = (await store.read(key, size, RECEIPT_PART_BYTES)).data
        if not part:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
        if size > MAX_RECEIPT_BYTES:
            raise ValueError(f"{key}: larger than a receipt can be ({MAX_RECEIPT_BYTES} bytes)")


def receipt_text(document: object, where: str, signature: str) -> str:
    deleted, total, failed = (at(document, "counts", name) for name in ("deleted", "total", "failed"))
    unrecoverable = at(document, "erasure", "unrecoverableAfter")
    if unrecoverable == "-":
        unrecoverable = "a time the storage does not declare"
    lines = [
        f"Receipt:        {where}",
        f"Signature:      {signature}",
        f"Object:         {describe_subject(document)}",
        f"Album:          {at(document, 'object', 'album')}",
        f"Storage:        {at(document, 'storage')}",
        f"Phase:          {at(document, 'phase')}",
        f"Keys:           {deleted} of {total} deleted, {failed} failed",
        f"Deleted:        between {at(document, 'started')} and {at(document, 'finished')}",
        f"Unrecoverable:  after {unrecoverable}",
        f"Operator:       {at(document, 'operatorVersion')}",
    ]
    if at(document, "keys", "sha256") != "-":
        count = at(document, "keys", "count")  # text: a receipt read back is any JSON until verified
        keys = "key" if count == "1" else "keys"
        lines.append(f"Key list:       {count} {keys}, SHA-256 {at(document, 'keys', 'sha256')}")
        groups = document.get("keys", {}).get("failed") if isinstance(document, dict) else None
        lines.extend(
            f"Failed:         {at(group, 'error')} (indexes {at(group, 'indexes')})"
            for group in (groups if isinstance(groups, list) else [])
        )
    if at(document, "manifest", "key") != "-":
        version, size = at(document, "manifest", "version"), at(document, "manifest", "size")
        size_bytes = "byte" if size == "1" else "bytes"
        lines.append(
            f"Manifest:       {at(document, 'manifest', 'key')} (version {version}, {size} {size_bytes})"
        )
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[FileCleanupClient, argparse.Namespace], Awaitable[int]]] = {
    "submit": submit,
    "status": status,
    "wait": wait,
    "retry": retry,
    "undo": undo,
    "failed": failed,
    "relay": cli_outbox.relay,
    "receipt": show_receipt,
}


async def run(args: argparse.Namespace) -> int:
    if args.command == "outbox":
        return cli_outbox.outbox(args)
    if args.command == "receipt" and args.action == "verify":
        return verify_receipt(args)  # a file and a key: no cluster
    api, context_namespace = await kube.connect_as_kubectl(args.kubeconfig, args.context)
    if getattr(args, "namespace", "unset") is None:
        args.namespace = context_namespace
    async with FileCleanupClient(api) as client:
        return await COMMANDS[args.command](client, args)


def api_error(error: ApiException, args: argparse.Namespace) -> str:
    """As kubectl says it: the object by name where there is one, and the API server's own message."""
    name = getattr(args, "name", None) or (f"album {args.album}" if getattr(args, "album", None) else None)
    where = f" in namespace {args.namespace}" if getattr(args, "namespace", None) else ""
    if error.status == HTTPStatus.NOT_FOUND and name:
        return f'{PLURAL}.{GROUP} "{name}" not found{where}'
    subject = f'{PLURAL}.{GROUP} "{name}"{where}: ' if name else ""
    return f"{subject}{kube.describe_api_error(error)}"


class TerminalFormatter(logging.Formatter):
    """Log lines made :func:`printable`: they carry the API server's and the storages' messages. A
    traceback keeps its lines, each escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        return printable(super().formatMessage(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:  # noqa: N802  (logging's name)
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))


def configure_logging() -> None:
    """Warnings from anyone, and the CLI's own INFO lines (the relay's), but not the libraries' INFO
    lines: httpx's, one per request, would bury what the CLI prints."""
    handler = logging.StreamHandler()
    handler.setFormatter(TerminalFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("filecleanup").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    code: int | None = None
    try:
        code = asyncio.run(run(args))
        sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's last flush
    except BrokenPipeError:
        return reader_gone(code)
    except (ConfigException, OutboxMissing) as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, SubmitConflict, OSError, StorageUnavailable) as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return error_code(args)
    except ApiException as error:
        print(f"error: {printable(api_error(error, args))}", file=sys.stderr)
        return error_code(args)
    return code


def error_code(args: argparse.Namespace) -> int:
    """An error's exit code: 2, but for wait, whose 2 says that it timed out."""
    return EXIT_USAGE if args.command == "wait" else EXIT_ERROR


def reader_gone(code: int | None) -> int:
    """Standard output's reader stopped reading (``| head -1``). That is no failure of the command: exit
    with its own code if it had finished, else 0, as kubectl does when its output fits the pipe, and
    not 141 (killed by SIGPIPE), which ``set -o pipefail`` would take for a failure. The output still
    buffered goes to /dev/null, so that the interpreter's last flush does not fail in turn."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK if code is None else code


if __name__ == "__main__":
    sys.exit(main())
