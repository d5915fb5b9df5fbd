"""A manifest's run against an in-memory storage that holds manifests: what status says when a failure
report cannot be written, and what the gate does with a key that a manifest's reader lets through."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filecleanup.api.config import OperatorConfig
from filecleanup.api.keys import key_problem
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import FileCleanupSpec, FileCleanupStatus, Phase, Reason
from filecleanup.run.context import ObjectContext
from filecleanup.run.reconciler import Reconciler
from filecleanup.storage.base import (
    ConcurrencyLimited,
    ObjectPart,
    StorageUnavailable,
)
from filecleanup.storage.limits import Limiter
from tests.support.memory_storage import MemoryStorage
from tests.unit.test_reconciler import CONFIG, Events, FakeSink

MANIFEST = "t/albums/m.keys"
POLICY = {"allowedNamespaces": "*", "keyPrefix": "t/{namespace}/"}  # the object's namespace: albums


async def run_once(
    storage: MemoryStorage,
    status: FileCleanupStatus,
    key_file: Path,
    events: Events | None = None,
    metrics: Metrics | None = None,
) -> FakeSink:
    """One run of the manifest object, as the handler makes it; what it wrote (and the events posted,
    into ``events``)."""
    sink = FakeSink()
    events = Events() if events is None else events
    context = ObjectContext(
        spec=FileCleanupSpec.model_validate(
            {"manifest": {"key": MANIFEST}, "chunkSize": 1, "backoff": {"initialSeconds": 1}}
        ),
        status=status,
        namespace="albums",
        name="album-1",
        generation=1,
        sink=sink,
        post_event=lambda kind, reason, message: events.append((kind, reason, message)),
        logger=logging.getLogger("test"),
    )
    config = OperatorConfig.model_validate(
        {
            **CONFIG.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "reportKeyFile": str(key_file),
            "storages": {"photos": {"type": "filesystem", "root": "/unused", "policy": POLICY}},
        }
    )
    limited = ConcurrencyLimited(storage, Limiter(4), Metrics())
    await Reconciler(config, {"photos": limited}, metrics or Metrics(), jitter=lambda: 0.0).run(context)
    return sink


async def test_a_report_the_storage_refuses_keeps_its_keys_pending_and_the_counts_exact(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "report-key"
    key_file.write_text("k" * 32)
    keys = [f"t/albums/{i}.jpg" for i in range(4)]
    storage = MemoryStorage(
        {MANIFEST: "".join(f"{key}\n" for key in keys).encode()},
        failing=frozenset({keys[2]}),
        refused_writes=1,
    )
    first = await run_once(storage, FileCleanupStatus(), key_file)
    waiting = first.written[-1]
    assert (waiting.phase, waiting.conditions[-1].reason) == (Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE)
    # Nothing recorded past what a saved report backs: no deletion counted, no failure lost.
    assert waiting.manifest is not None
    assert (waiting.deleted, waiting.manifest.sent, waiting.manifest.failed_now) == (0, 0, 0)
    assert not any(".report/" in key for key in storage.objects)

    second = await run_once(storage, waiting, key_file)
    retrying = second.written[-1]
    assert retrying.phase == Phase.BACKOFF
    assert retrying.conditions[-1].reason == Reason.RETRY_SCHEDULED
    assert (retrying.total, retrying.deleted, retrying.failed) == (4, 3, 1)
    report = [key for key in storage.objects if ".report/albums/album-1/round-0000/" in key]
    assert len(report) == 1
    assert storage.objects[report[0]].decode().startswith(f"{keys[2]}\t")


async def test_an_outage_while_the_manifest_is_checked_is_one_outage(tmp_path: Path) -> None:
    """Each try writes no "checking" status of its own: the outage's start is kept, its waits grow,
    and only its first try posts a Warning."""
    key_file = tmp_path / "report-key"
    key_file.write_text("k" * 32)
    storage = MemoryStorage({})

    async def down(key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        raise StorageUnavailable("storage photos: GET answered 503")

    storage.read = down  # type: ignore[method-assign]
    events = Events()
    status = FileCleanupStatus()
    delays = []
    for _ in range(3):
        sink = await run_once(storage, status, key_file, events)
        status = sink.written[-1]
        progressing = status.conditions[0]
        assert (status.phase, progressing.reason) == (Phase.BACKOFF, Reason.STORAGE_UNAVAILABLE)
        delays.append(status.next_retry_time)
    assert [reason for kind, reason, _ in events if kind == "Warning"] == ["StorageUnavailable"]


ALLOWED = "t/albums/"
ANY_KEY = st.one_of(
    st.builds("t/albums/{}.jpg".format, st.integers(0, 5)),
    st.builds("t/other/{}.jpg".format, st.integers(0, 5)),
    st.sampled_from(["../x", "t/albums/../../y", "/abs", "t//double", "t/albums/\x1b.jpg"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    manifest=st.lists(ANY_KEY, min_size=1, max_size=6),
    report=st.lists(st.tuples(ANY_KEY, st.text(max_size=40)), max_size=4),
    round_number=st.integers(0, 3),
    retries=st.integers(0, 3),
    total=st.integers(0, 8),
    sent=st.integers(0, 8),
)
def test_no_key_outside_the_policy_is_ever_sent_whatever_the_manifest_report_or_status_hold(
    tmp_path: Path,
    *,
    manifest: list[str],
    report: list[tuple[str, str]],
    round_number: int,
    retries: int,
    total: int,
    sent: int,
) -> None:
    key_file = tmp_path / "report-key"
    key_file.write_text("k" * 32)
    place = "t/albums/m.keys.report/albums/album-1"
    forged = "".join(f"{key}\t{rest}\n" for key, rest in report).encode()
    storage = MemoryStorage(
        {
            MANIFEST: "".join(f"{key}\n" for key in manifest).encode(),
            **{f"{place}/round-{n:04d}/00000": forged for n in range(4)},
        }
    )
    progress = {"checked": True, "round": round_number, "sources": 1, "roundTotal": total, "sent": sent}
    status = FileCleanupStatus.model_validate(
        {"total": total, "retries": retries, "manifest": {**progress, "size": 100, "version": "v"}}
    )
    asyncio.run(run_once(storage, status, key_file))
    assert all(key.startswith(ALLOWED) and key_problem(key) is None for key in storage.sent)


async def test_a_manifests_retry_is_announced_as_every_retry_is(tmp_path: Path) -> None:
    """One decision and one announcement for every source: the event, the log line and the metric."""
    key_file = tmp_path / "report-key"
    key_file.write_text("k" * 32)
    keys = [f"t/albums/{i}.jpg" for i in range(3)]
    storage = MemoryStorage(
        {MANIFEST: "".join(f"{key}\n" for key in keys).encode()}, failing=frozenset({keys[1]})
    )
    events, metrics = Events(), Metrics()
    sink = await run_once(storage, FileCleanupStatus(), key_file, events, metrics)
    assert sink.written[-1].phase == Phase.BACKOFF
    assert events == [("Normal", "RetryScheduled", "retry 1 of 5 for 1 failed key in 1 s")]
    assert metrics.retry_rounds.labels("photos")._value.get() == 1
