"""Layer decide. Erasure receipts: what a finished object deleted, signed, to be kept in a storage after
the object is gone; and their check. Pure: run/receipts.py writes them, the CLI reads and checks them.

A receipt is one JSON document, stored in canonical form (keys sorted, no spaces, ASCII with JSON's
escapes, one line ending in a line feed). Its ``signature`` is an HMAC-SHA256, with the operator's
receipt key, over the canonical form of the document without it; a receipt that is not byte for byte
its canonical form was changed, and does not verify either. It names the object
(namespace, name, UID, album), the storage, the keys (each one, and a SHA-256 over the list as given:
each key and a line feed, in order) or the manifest (its key, version and size), the counts, each
key's outcome, when the deletion ran, when the storage makes it unrecoverable, and the operator's
version. Nothing in it is secret: keys and counts are what the object showed already.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from filecleanup import __version__
from filecleanup.api.indexes import format_ranges, parse_ranges
from filecleanup.api.keys import key_problem
from filecleanup.api.models import FileCleanupSpec, FileCleanupStatus

KIND = "filecleanup.dev/ErasureReceipt"
VERSION = "v1"
ALGORITHM = "HMAC-SHA256"
UNLABELLED = "-"  # the path segment of an object without an album label


@dataclass(frozen=True)
class Subject:
    """The object a receipt is about."""

    namespace: str
    name: str
    uid: str
    album: str | None


def receipt_key(prefix: str, subject: Subject) -> str | None:
    """Where the receipt goes: ``<prefix><namespace>/<album or ->/<name>/<uid>.json``, so that an
    album's receipts are found by its label. None when the parts do not make a valid key (a label is
    anyone's to write: it is checked as every key is)."""
    album = subject.album or UNLABELLED
    key = f"{prefix}{subject.namespace}/{album}/{subject.name}/{subject.uid}.json"
    return None if key_problem(key) is not None else key


def keys_digest(keys: Sequence[str]) -> str:
    """SHA-256 over the keys as given: each key and a line feed, in order (a keys file's bytes)."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _time(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def receipt(
    subject: Subject,
    spec: FileCleanupSpec,
    status: FileCleanupStatus,
    *,
    storage: str,
    recoverable_seconds: int | None,
) -> dict[str, Any]:
    """The unsigned receipt of a finished object, from its spec and its final status."""
    document: dict[str, Any] = {
        "kind": KIND,
        "version": VERSION,
        "object": {
            "namespace": subject.namespace,
            "name": subject.name,
            "uid": subject.uid,
            "album": subject.album,
        },
        "storage": storage,
        "phase": status.phase.value,
        "counts": {"total": status.total, "deleted": status.deleted, "failed": status.failed},
        # The storage confirmed each deletion at some moment between these two.
        "started": _time(status.start_time),
        "finished": _time(status.completion_time),
        "erasure": {
            "recoverableForSeconds": recoverable_seconds,
            "unrecoverableAfter": _time(status.unrecoverable_after),
        },
        "operatorVersion": __version__,
    }
    if status.verification is not None:
        verification = status.verification
        document["rechecks"] = {
            "afterSeconds": verification.after_seconds,
            "done": verification.done,
            "next": _time(verification.next_time),
            "resurrected": verification.resurrected,
            "resurrectedKeys": verification.resurrected_keys,
            "last": verification.last,
        }
    if spec.prefix is not None:
        listing = status.listing
        document["prefix"] = {
            "prefix": spec.prefix,
            # The listing (one key and a line feed each) is removed once the object Succeeded: its
            # digest and count stand for it.
            "listed": listing.listed if listing else 0,
            "listingSha256": listing.sha256 if listing else "",
            "skipped": listing.skipped if listing else 0,
            "skippedKeys": listing.skipped_keys if listing else [],
            "failureReport": status.manifest.report if status.manifest else "",
        }
        return document
    if spec.manifest is not None:
        progress = status.manifest
        document["manifest"] = {
            "key": spec.manifest.key,
            "version": progress.version if progress else "",
            "size": progress.size if progress else 0,
            "failureReport": progress.report if progress else "",
        }
        return document
    total = len(spec.keys)
    failed = {index for group in status.failed_errors for index in parse_ranges(group.indexes, total)}
    not_sent = set(parse_ranges(status.pending_indexes, total)) - failed
    # Progress names a repeated key by its first index; its other indexes share that one's outcome.
    first: dict[str, int] = {}
    for index, key in enumerate(spec.keys):
        first.setdefault(key, index)
    unfinished = failed | not_sent
    deleted = [index for index, key in enumerate(spec.keys) if first[key] not in unfinished]
    document["keys"] = {
        "sha256": keys_digest(spec.keys),
        "count": total,
        "list": list(spec.keys),
        # Indexes into the list, as ranges ("0-99,150"); a deleted key may have been missing already.
        "deleted": format_ranges(deleted),
        "notSent": format_ranges(sorted(not_sent)),
        "failed": [{"error": group.error, "indexes": group.indexes} for group in status.failed_errors],
    }
    return document


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def key_id(secret: bytes) -> str:
    """Names the key without revealing it: which key to check a receipt with."""
    return hashlib.sha256(b"filecleanup receipt key\n" + secret).hexdigest()[:16]


def sign(document: dict[str, Any], secret: bytes) -> bytes:
    """The receipt as stored: the document with its signature, in canonical form."""
    value = hmac.new(secret, canonical(document), hashlib.sha256).hexdigest()
    signed = {**document, "signature": {"algorithm": ALGORITHM, "keyId": key_id(secret), "value": value}}
    return canonical(signed) + b"\n"


def verify(data: bytes, secret: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The receipt in ``data`` and None when its signature is the key's; else what is wrong. Any
    bytes at all give an answer, never an exception."""
    signed = _parsed(data)
    if isinstance(signed, str):
        return None, signed
    signature = signed.pop("signature", None)
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        return None, f"not signed with {ALGORITHM}"
    if signature.get("keyId") != key_id(secret):
        return None, "signed with another key (keyId differs)"
    value = signature.get("value")
    expected = hmac.new(secret, canonical(signed), hashlib.sha256).hexdigest()
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), expected.encode()):
        return None, "the signature does not match: the receipt was changed"
    return signed, None


def _parsed(data: bytes) -> dict[str, Any] | str:
    """The receipt's JSON, or what keeps ``data`` from being one."""
    try:
        signed = json.loads(data.decode())
    except (ValueError, RecursionError):  # not UTF-8, not JSON, a number too long to read
        return "not a receipt: not JSON"
    if not isinstance(signed, dict) or signed.get("kind") != KIND:
        return f"not a receipt: no kind {KIND}"
    if canonical(signed) + b"\n" != data:
        return "not in a receipt's exact form: it was changed"
    return signed


def keys_problem(document: dict[str, Any], keys: Sequence[str]) -> str | None:
    """Whether ``keys`` are the keys a verified receipt is about (its SHA-256); why not, else None."""
    listing = document.get("prefix")
    if isinstance(listing, dict):  # a prefix's: its listing's digest, as the same bytes give it
        if listing.get("listingSha256") != keys_digest(keys):
            listed = listing.get("listed")
            return f"the keys differ from the prefix's listing ({len(keys)} given, {listed} listed)"
        return None
    recorded = document.get("keys")
    if not isinstance(recorded, dict):
        return "the receipt is about a manifest, not a key list"
    if recorded.get("sha256") != keys_digest(keys):
        return f"the keys differ from the receipt's ({len(keys)} given, {recorded.get('count')} in it)"
    return None
