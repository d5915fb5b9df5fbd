"""Erasure receipts: what they say, that any change to one is found, and that a run writes one before
it says the object finished (and does not finish without it)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.album.cli import receipt_text
from filecleanup.api.config import OperatorConfig
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    ConditionType,
    FailedError,
    FileCleanupSpec,
    FileCleanupStatus,
    ManifestProgress,
    Phase,
    Reason,
)
from filecleanup.decide import receipts
from filecleanup.run.context import ObjectContext
from filecleanup.run.reconciler import Reconciler
from filecleanup.storage.base import ChunkResult, ObjectPart
from filecleanup.storage.errors import StorageUnavailable
from tests.unit.decisions import NOW, spec
from tests.unit.test_reconciler import Events, FakeSink, context, limited

SECRET = b"k" * 32
SUBJECT = receipts.Subject("photos", "album-42", "0b1c-uid", "42")


def finished(the_spec_keys: list[str], **status: object) -> tuple[dict[str, object], bytes]:
    the_spec = spec(the_spec_keys)
    final = FileCleanupStatus(
        phase=Phase.SUCCEEDED,
        total=len(set(the_spec_keys)),
        start_time=NOW,
        completion_time=NOW + datetime.timedelta(seconds=3),
        **status,
    )
    document = receipts.receipt(SUBJECT, the_spec, final, storage="photos", recoverable_seconds=0)
    return document, receipts.sign(document, SECRET)


def test_a_receipt_names_the_object_its_keys_and_each_outcome() -> None:
    keys = ["a/1", "a/2", "a/1", "a/3"]  # a repeated key shares its first occurrence's outcome
    document, signed = finished(
        keys, deleted=2, failed=1, failed_errors=[FailedError(error="boom", indexes="0")]
    )
    verified, problem = receipts.verify(signed, SECRET)
    assert (verified, problem) == (document, None)
    assert document["object"] == {"namespace": "photos", "name": "album-42", "uid": "0b1c-uid", "album": "42"}
    assert document["keys"] == {
        "sha256": receipts.keys_digest(keys),
        "count": 4,
        "list": keys,
        "deleted": "1,3",
        "notSent": "",
        "failed": [{"error": "boom", "indexes": "0"}],
    }
    assert (document["started"], document["finished"]) == ("2026-11-26T12:00:00Z", "2026-11-26T12:00:03Z")
    assert receipts.keys_problem(document, keys) is None
    assert "the keys differ" in (receipts.keys_problem(document, keys[:3]) or "")
    assert signed.isascii() and signed.endswith(b"\n") and signed.count(b"\n") == 1


@given(data=st.data())
def test_any_single_byte_changed_is_found(data: st.DataObject) -> None:
    _, signed = finished(["a/1", "a/2", "b/\u00e9\u0085.jpg"], deleted=3)
    position = data.draw(st.integers(min_value=0, max_value=len(signed) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda value: value != signed[position]))
    changed = signed[:position] + bytes([byte]) + signed[position + 1 :]
    document, problem = receipts.verify(changed, SECRET)
    assert document is None
    assert problem


def test_every_byte_position_is_covered() -> None:
    _, signed = finished(["a/1", "a/2"], deleted=2)
    for position in range(len(signed)):
        changed = signed[:position] + bytes([signed[position] ^ 0x01]) + signed[position + 1 :]
        assert receipts.verify(changed, SECRET)[0] is None, position


@given(data=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_any_bytes_get_an_answer_never_an_exception(data: bytes) -> None:
    document, problem = receipts.verify(data, SECRET)
    assert document is None
    assert problem


def test_another_key_or_a_resigned_receipt_does_not_verify() -> None:
    _, signed = finished(["a/1"], deleted=1)
    assert receipts.verify(signed, b"x" * 32) == (None, "signed with another key (keyId differs)")
    forged = json.loads(signed)
    forged["counts"]["deleted"] = 0
    forged["signature"]["value"] = "0" * 64
    verified, problem = receipts.verify(receipts.canonical(forged) + b"\n", SECRET)
    assert verified is None
    assert problem == "the signature does not match: the receipt was changed"
    assert receipts.verify(json.dumps(json.loads(signed), indent=2).encode(), SECRET)[1] == (
        "not in a receipt's exact form: it was changed"
    )


def test_receipts_are_filed_by_namespace_album_name_and_uid() -> None:
    assert receipts.receipt_key("r/", SUBJECT) == "r/photos/42/album-42/0b1c-uid.json"
    unlabelled = receipts.Subject("photos", "x", "u", None)
    assert receipts.receipt_key("r/", unlabelled) == "r/photos/-/x/u.json"
    assert receipts.receipt_key("r/", receipts.Subject("photos", "x", "u", "bad\nlabel")) is None


@dataclass
class ObjectStorage:
    """Confirms every key; keeps whole objects, and refuses writes while ``down``."""

    name: str = "photos"
    max_keys_per_call: int | None = None
    objects: dict[str, bytes] = field(default_factory=dict)
    down: bool = False
    sent: list[str] = field(default_factory=list)

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        self.sent += keys
        await asyncio.sleep(0)
        return ChunkResult.from_reply(keys, keys, {})

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:  # noqa: ARG002
        return ObjectPart(self.objects[key][offset : offset + size])

    async def write(self, key: str, data: bytes) -> None:
        if self.down:
            raise StorageUnavailable("HTTP 503 from the storage")
        self.objects[key] = data

    async def aclose(self) -> None:
        """Nothing to release."""


def with_uid(found: ObjectContext) -> ObjectContext:
    return dataclasses.replace(found, uid="u-1")


def receipts_reconciler(storage: ObjectStorage, tmp_path: Path) -> Reconciler:
    key_file = tmp_path / "receipt-key"
    key_file.write_bytes(SECRET + b"\n")
    config = OperatorConfig.model_validate(
        {
            "defaultStorage": "photos",
            "storages": {
                "photos": {
                    "type": "filesystem",
                    "root": "/unused",
                    "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
                }
            },
            "receipts": {"prefix": "receipts/", "keyFile": str(key_file)},
        }
    )
    return Reconciler(config, {"photos": limited(storage)}, Metrics(), jitter=lambda: 0.0)  # type: ignore[arg-type]


async def test_no_finish_without_its_receipt_and_the_receipt_comes_first(tmp_path: Path) -> None:
    storage = ObjectStorage(down=True)
    reconciler, sink, events = receipts_reconciler(storage, tmp_path), FakeSink(), Events()
    waiting = await reconciler.run(with_uid(context(sink, events)))
    assert waiting.requeue_after is not None
    (status,) = sink.written
    assert (status.phase, status.deleted, status.receipt) == (Phase.BACKOFF, 10, None)
    progressing = status.condition(ConditionType.PROGRESSING)
    assert progressing is not None
    assert progressing.reason == Reason.STORAGE_UNAVAILABLE
    assert "the erasure receipt could not be written to 'photos'" in progressing.message
    storage.down = False
    sent_before = len(storage.sent)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=10)  # the back-off over
    await reconciler.run(dataclasses.replace(with_uid(context(sink, events, status)), clock=lambda: later))
    done = sink.written[-1]
    assert done.phase == Phase.SUCCEEDED
    assert len(storage.sent) == sent_before  # every key was recorded: nothing sent again
    assert done.receipt is not None
    assert done.receipt.key == "receipts/albums/-/album-1/u-1.json"
    document, problem = receipts.verify(storage.objects[done.receipt.key], SECRET)
    assert problem is None
    assert document is not None
    assert document["counts"] == {"total": 10, "deleted": 10, "failed": 0}


async def test_no_object_may_delete_the_receipts(tmp_path: Path) -> None:
    storage = ObjectStorage()
    reconciler, sink, events = receipts_reconciler(storage, tmp_path), FakeSink(), Events()
    await reconciler.run(
        with_uid(context(sink, events, keys=["receipts/albums/x.json", "albums/1.jpg"], maxRetries=0))
    )
    done = sink.written[-1]
    assert (done.phase, done.deleted, done.failed) == (Phase.FAILED, 1, 1)
    assert storage.sent == ["albums/1.jpg"]
    assert "where the operator keeps its erasure receipts" in done.failed_keys[0].error


@pytest.mark.parametrize("prefix", ["receipts", "/receipts/", "a//b/"])
def test_a_receipts_prefix_must_be_a_key_prefix(prefix: str, tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_bytes(SECRET)
    with pytest.raises(ValueError, match="must be a valid key prefix"):
        OperatorConfig.model_validate(
            {
                "defaultStorage": "s",
                "storages": {
                    "s": {
                        "type": "filesystem",
                        "root": "/d",
                        "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
                    }
                },
                "receipts": {"prefix": prefix, "keyFile": str(key_file)},
            }
        )


def test_a_manifests_receipt_names_the_manifest_and_its_failure_report() -> None:
    the_spec = FileCleanupSpec.model_validate({"manifest": {"key": "albums/7/.manifest.txt"}})
    final = FileCleanupStatus(
        phase=Phase.FAILED,
        total=3,
        deleted=2,
        failed=1,
        completion_time=NOW,
        manifest=ManifestProgress(
            checked=True, version='"etag-1"', size=42, report="albums/7/.manifest.txt.report-"
        ),
    )
    document = receipts.receipt(SUBJECT, the_spec, final, storage="photos", recoverable_seconds=None)
    assert document["manifest"] == {
        "key": "albums/7/.manifest.txt",
        "version": '"etag-1"',
        "size": 42,
        "failureReport": "albums/7/.manifest.txt.report-",
    }
    assert "keys" not in document
    assert document["erasure"] == {"recoverableForSeconds": None, "unrecoverableAfter": None}
    assert receipts.verify(receipts.sign(document, SECRET), SECRET) == (document, None)
    assert receipts.keys_problem(document, ["a"]) == "the receipt is about a manifest, not a key list"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(
    document=json_values
    | st.fixed_dictionaries({"counts": json_values, "keys": json_values, "object": json_values})
)
def test_any_json_read_back_prints_as_text_never_an_exception(document: object) -> None:
    text = receipt_text(document, "photos:r.json", "not checked (--key-file)")
    assert text.startswith("Receipt:        photos:r.json\n")


def test_a_receipt_written_after_a_recheck_names_the_keys_found_again() -> None:
    from filecleanup.api.models import Verification  # noqa: PLC0415  (this test only)

    checked = Verification(
        after_seconds=[60, 3600], done=1, resurrected=1, resurrected_keys=["a/2"], last="re-check 1 of 2: ..."
    )
    document, signed = finished(["a/1", "a/2"], deleted=2, verification=checked)
    assert document["rechecks"] == {
        "afterSeconds": [60, 3600],
        "done": 1,
        "next": None,
        "resurrected": 1,
        "resurrectedKeys": ["a/2"],
        "last": "re-check 1 of 2: ...",
    }
    assert receipts.verify(signed, SECRET)[1] is None


def test_a_prefixs_receipt_names_its_listing_by_count_and_digest() -> None:
    from filecleanup.api.models import Listing  # noqa: PLC0415  (this test only)

    listed = ["albums/9/a.jpg", "albums/9/b.jpg"]
    the_spec = FileCleanupSpec.model_validate({"prefix": "albums/9/"})
    final = FileCleanupStatus(
        phase=Phase.SUCCEEDED,
        total=2,
        deleted=2,
        completion_time=NOW,
        listing=Listing(
            key="albums/9/.filecleanup-listing-u.txt",
            listed=2,
            skipped=1,
            skipped_keys=["albums/9/a//b"],
            sha256=receipts.keys_digest(listed),
        ),
    )
    document = receipts.receipt(SUBJECT, the_spec, final, storage="photos", recoverable_seconds=0)
    assert document["prefix"] == {
        "prefix": "albums/9/",
        "listed": 2,
        "listingSha256": receipts.keys_digest(listed),
        "skipped": 1,
        "skippedKeys": ["albums/9/a//b"],
        "failureReport": "",
    }
    assert receipts.keys_problem(document, listed) is None
    assert "differ from the prefix's listing" in (receipts.keys_problem(document, listed[:1]) or "")
