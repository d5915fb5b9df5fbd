"""Dry runs (spec.dryRun): the decisions, the counts and the status, pure; then the reconciler with a
pretend storage, and the HTTP backend's opt-in check with a mock transport. Nothing is ever deleted."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import ValidationError

from filecleanup.api.config import HttpStorageConfig
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import (
    ConditionType,
    DryRunCounts,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
    Reason,
)
from filecleanup.decide import outcomes
from filecleanup.decide.plan import DryRun, Finished, Reject, Suspend, Wait
from filecleanup.decide.status import dry_run_status
from filecleanup.storage.base import (
    ChunkResult,
    ConcurrencyLimited,
    ExistsResult,
    StorageThrottled,
    StorageUnavailable,
)
from filecleanup.storage.http import HttpStorage
from filecleanup.storage.limits import Limiter
from tests.unit.decisions import NOW, plan, spec
from tests.unit.test_reconciler import Events, FakeSink, context
from tests.unit.test_reconciler import reconciler as make_reconciler
from tools.devkit.gates import OPEN_GATE

# Planning


def test_a_dry_run_is_planned_as_one() -> None:
    assert plan(spec(["a", "b"], dryRun=True), FileCleanupStatus()) == DryRun("photos")


def test_a_dry_run_is_refused_by_the_policy_as_a_real_run_is() -> None:
    # The same rejection as a real run: the dry run says exactly what the real run would do.
    action = plan(spec(["t/team-b/x"], dryRun=True, storage="tenants"), FileCleanupStatus(), "team-a")
    assert isinstance(action, Reject)
    assert action.reason == Reason.FORBIDDEN


def test_a_suspended_dry_run_waits() -> None:
    assert isinstance(plan(spec(["a"], dryRun=True, suspend=True), FileCleanupStatus()), Suspend)


def test_a_dry_run_waits_out_a_storage_outage_and_keeps_its_deadline() -> None:
    started = NOW - datetime.timedelta(seconds=30)
    waiting = FileCleanupStatus(
        phase=Phase.BACKOFF, start_time=started, next_retry_time=NOW + datetime.timedelta(seconds=10)
    )
    assert plan(spec(["a"], dryRun=True), waiting) == Wait(10.0)
    late = plan(spec(["a"], dryRun=True, activeDeadlineSeconds=20), waiting)
    assert isinstance(late, Reject)
    assert late.reason == Reason.DEADLINE_EXCEEDED


def test_a_finished_dry_run_is_finished() -> None:
    assert plan(spec(["a"], dryRun=True), FileCleanupStatus(phase=Phase.CHECKED)) == Finished()


def test_a_dry_run_over_a_manifest_is_refused() -> None:
    with pytest.raises(ValidationError, match="dryRun is not supported with a manifest"):
        FileCleanupSpec.model_validate({"manifest": {"key": "m.txt"}, "dryRun": True})


# Counts and status


def test_exists_result_counts_only_requested_keys_and_a_contradiction_is_unknown() -> None:
    result = ExistsResult.from_reply(["a", "b", "c", "d"], existing=["a", "b", "z"], missing=["b", "c"])
    assert result == ExistsResult(existing=frozenset({"a"}), missing=frozenset({"c"}))
    counts = outcomes.dry_run_counts([result, ExistsResult(forbidden=frozenset({"e"}))], total=6)
    assert counts == DryRunCounts(would_delete=1, missing=1, forbidden=1, unknown=3)


def test_a_finished_dry_run_is_checked_ready_and_never_complete() -> None:
    counts = DryRunCounts(would_delete=3, missing=1, forbidden=0, unknown=0)
    outcome = outcomes.dry_run_done(counts, 4)
    status = dry_run_status(
        FileCleanupStatus(),
        spec=spec(["a", "b", "c", "d"], dryRun=True),
        storage="photos",
        total=4,
        counts=counts,
        outcome=outcome,
        generation=1,
        now=NOW,
    )
    assert (status.phase, status.total, status.deleted, status.failed) == (Phase.CHECKED, 4, 0, 0)
    assert status.dry_run == counts
    assert status.completion_time == NOW
    # `kubectl wait --for=condition=Complete` waits for deletions: a dry run completed none.
    assert status.condition(ConditionType.COMPLETE) is None
    ready = status.condition(ConditionType.READY)
    assert ready is not None
    assert (ready.status, ready.reason, ready.message) == ("True", "DryRun", outcome.message)
    assert status.message == outcome.message
    assert outcome.message == (
        "dry run of 4 keys: 3 would be deleted, 1 missing, 0 forbidden, 0 unknown; nothing was deleted"
    )


# The reconciler, with a pretend storage


@dataclass
class CheckingStorage:
    """Has the keys in ``present``; deletes nothing, and records any delete it is asked for."""

    present: set[str]
    name: str = "photos"
    max_keys_per_call: int | None = None
    holds_manifests: bool = False
    deleted: list[str] = field(default_factory=list)
    asked: list[list[str]] = field(default_factory=list)
    down: bool = False

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        self.deleted += keys
        return ChunkResult.from_reply(keys, keys, {})

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        if self.down:
            raise StorageUnavailable("cannot connect to storage photos: connection failed")
        self.asked.append(list(keys))
        forbidden = [key for key in keys if key.endswith("/9")]
        return ExistsResult.from_reply(
            keys, self.present, set(keys) - self.present - set(forbidden), forbidden
        )

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_a_dry_run_reports_the_counts_and_deletes_nothing() -> None:
    storage = CheckingStorage(present={f"k/{i}" for i in range(6)})
    sink, events = FakeSink(), Events()
    run = make_reconciler(storage)  # type: ignore[arg-type]
    after = await run.run(context(sink, events, dryRun=True))
    assert after.requeue_after is None
    assert storage.deleted == []
    assert [len(chunk) for chunk in storage.asked] == [2] * 5  # chunkSize at a time
    assert [status.phase for status in sink.written] == [Phase.IN_PROGRESS, Phase.CHECKED]
    final = sink.written[-1]
    assert final.dry_run == DryRunCounts(would_delete=6, missing=3, forbidden=1, unknown=0)
    assert (final.deleted, final.total) == (0, 10)
    assert events == [
        (
            "Normal",
            "DryRun",
            "dry run of 10 keys: 6 would be deleted, 3 missing, 1 forbidden, 0 unknown; nothing was deleted",
        )
    ]


async def test_a_dry_run_waits_for_an_unavailable_storage_without_a_verdict() -> None:
    storage = CheckingStorage(present=set(), down=True)
    sink, events = FakeSink(), Events()
    after = await make_reconciler(storage).run(context(sink, events, dryRun=True))  # type: ignore[arg-type]
    assert after.requeue_after == 5.0
    assert sink.written[-1].phase == Phase.BACKOFF
    assert sink.written[-1].dry_run is None
    assert [reason for _, reason, _ in events] == ["StorageUnavailable"]


async def test_the_concurrency_limit_passes_the_check_through_and_knows_a_storage_without_it() -> None:
    metrics = Metrics()
    limited = ConcurrencyLimited(CheckingStorage(present={"a"}), Limiter(2), metrics)
    assert await limited.exists(["a", "b"], gate=OPEN_GATE) == ExistsResult(
        existing=frozenset({"a"}), missing=frozenset({"b"})
    )
    # A check is timed as a check, never as a delete call.
    samples = {
        (sample.name, sample.labels.get("outcome"))
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name.endswith("_count") and sample.value
    }
    assert ("filecleanup_check_call_duration_seconds_count", "checked") in samples
    assert not any(name.startswith("filecleanup_delete_call") for name, _ in samples)

    @dataclass
    class DeleteOnly:
        name: str = "old"
        max_keys_per_call: int | None = None
        holds_manifests: bool = False

        async def delete(self, keys: Sequence[str]) -> ChunkResult:
            raise AssertionError(f"a dry run must not delete {keys}")

        async def aclose(self) -> None:
            """Nothing to release."""

    blind = ConcurrencyLimited(DeleteOnly(), Limiter(2), metrics)
    assert await blind.exists(["a"], gate=OPEN_GATE) == ExistsResult.unknown()


# The HTTP backend: an opt-in extension of the contract


def http_storage(handler: httpx.MockTransport, **config: object) -> HttpStorage:
    settings = HttpStorageConfig.model_validate(
        {
            "type": "http",
            "url": "http://storage.test/delete",
            "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
            **config,
        }
    )
    return HttpStorage("photos", settings, transport=handler)


async def test_http_asks_its_dry_run_url_never_the_delete_url() -> None:
    seen: list[tuple[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), json.loads(request.content)))
        body = json.dumps({"existing": ["a"], "missing": ["b"], "forbidden": ["c"]}).encode()
        return httpx.Response(200, stream=httpx.ByteStream(body))  # a stream, as the network gives

    storage = http_storage(httpx.MockTransport(answer), dryRunUrl="http://storage.test/exists")
    result = await storage.exists(["a", "b", "c", "d"])
    assert result == ExistsResult(frozenset({"a"}), frozenset({"b"}), frozenset({"c"}))
    assert seen == [("http://storage.test/exists", {"keys": ["a", "b", "c", "d"]})]
    await storage.aclose()


async def test_http_without_a_dry_run_url_knows_nothing_and_sends_nothing() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no call was expected, got {request.url}")

    storage = http_storage(httpx.MockTransport(refuse))
    limited = ConcurrencyLimited(storage, Limiter(2), Metrics())
    assert await limited.exists(["a", "b"], gate=OPEN_GATE) == ExistsResult.unknown()
    await storage.aclose()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, b"", StorageThrottled),
        (401, b"", StorageUnavailable),
        (500, b"", StorageUnavailable),  # an outage, read as for a delete and as over S3
        (404, b"", ExistsResult.unknown()),  # a storage that does not know the extension
        (200, b'{"deleted": ["a"]}', ExistsResult.unknown()),  # not an answer to the question
    ],
)
async def test_http_replies_that_tell_nothing(status: int, body: bytes, expected: object) -> None:
    storage = http_storage(
        httpx.MockTransport(lambda _: httpx.Response(status, stream=httpx.ByteStream(body))),
        dryRunUrl="http://storage.test/exists",
    )
    if isinstance(expected, type):
        with pytest.raises(expected):
            await storage.exists(["a"])
    else:
        assert await storage.exists(["a"]) == expected
    await storage.aclose()


def test_the_dry_run_url_must_not_be_the_delete_url() -> None:
    with pytest.raises(ValidationError, match="dryRunUrl must not be the delete url"):
        HttpStorageConfig.model_validate(
            {
                "type": "http",
                "url": "http://storage.test/delete",
                "dryRunUrl": "http://storage.test/delete",
                "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
            }
        )


async def test_a_failed_dry_run_is_redriven_by_a_new_retry_nonce() -> None:
    storage = CheckingStorage(present={"k/0"})
    failed = FileCleanupStatus(phase=Phase.FAILED, start_time=NOW, completion_time=NOW, retry_nonce=None)
    sink, events = FakeSink(), Events()
    await make_reconciler(storage).run(context(sink, events, failed, dryRun=True, retryNonce="again"))  # type: ignore[arg-type]
    final = sink.written[-1]
    assert (final.phase, final.redrives, final.retry_nonce) == (Phase.CHECKED, 1, "again")
    assert final.start_time != NOW  # the deadline's clock starts again
    assert storage.deleted == []
