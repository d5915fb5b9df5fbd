"""Re-checks after Succeeded: when they are due, that the object stays watched and kept until the last,
and what one does with keys found again."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from filecleanup.api.config import OperatorConfig, RetentionConfig, Verify
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import DEFAULT_CONTROLLER, FileCleanupStatus, Phase, Verification
from filecleanup.decide import retention
from filecleanup.decide.plan import Finished, Recheck, Wait
from filecleanup.decide.status import with_verification
from filecleanup.run.context import ObjectContext
from filecleanup.run.reconciler import Reconciler
from filecleanup.storage.base import ChunkResult, ExistsResult
from tests.unit.decisions import NOW, keys, plan, spec
from tests.unit.test_reconciler import Events, FakeSink, FakeStorage, context, limited

DONE = FileCleanupStatus(phase=Phase.SUCCEEDED, storage="photos", total=3, deleted=3, completion_time=NOW)


def test_the_ages_must_ascend() -> None:
    assert Verify(after_seconds=[300, 86_400]).after_seconds == [300, 86_400]
    with pytest.raises(ValidationError, match="must be ascending"):
        Verify(after_seconds=[300, 300])


def test_a_success_sets_up_its_rechecks_once_and_waits_for_each() -> None:
    verifying = with_verification(DONE, [60, 3600])
    assert verifying.verification == Verification(
        after_seconds=[60, 3600], next_time=NOW + datetime.timedelta(minutes=1)
    )
    assert with_verification(verifying, [5]) == verifying  # set up once
    assert with_verification(DONE, None) == DONE
    failed = DONE.model_copy(update={"phase": Phase.FAILED})
    assert with_verification(failed, [60]) == failed
    the_spec = spec(keys(3))
    assert plan(the_spec, verifying, now=NOW) == Wait(60.0)
    assert plan(the_spec, verifying, now=NOW + datetime.timedelta(minutes=1)) == Recheck("photos")
    over = verifying.model_copy(update={"verification": Verification(after_seconds=[60], done=1)})
    assert plan(the_spec, over, now=NOW + datetime.timedelta(days=9)) == Finished()


def test_until_the_last_recheck_it_stays_watched_and_is_not_swept() -> None:
    the_spec = spec(keys(3), ttlSecondsAfterFinished=0)
    verifying = with_verification(DONE, [60])
    labels = retention.finished_labels(
        the_spec, verifying, controller="c", retention=RetentionConfig(), stored_bytes=10
    )
    assert (labels[retention.PHASE_LABEL], labels[retention.EXPIRES_LABEL]) == (retention.VERIFYING, None)
    assert Phase.SUCCEEDED.value != retention.VERIFYING  # Kopf's watch leaves only Succeeded out
    obj = {
        "metadata": {"uid": "u", "generation": 1, "labels": {**labels, retention.UID_LABEL: "u"}},
        "spec": {"keys": keys(3), "ttlSecondsAfterFinished": 0},
        "status": verifying.model_dump(mode="json", by_alias=True, exclude_none=True)
        | {"observedGeneration": 1},
    }
    found = retention.verdict(
        obj,
        controller=DEFAULT_CONTROLLER,
        retention=RetentionConfig(),
        now=NOW + datetime.timedelta(days=1),
    )
    assert not found.expired
    assert retention.PHASE_LABEL not in found.relabel  # the sweeper agrees: it stays watched
    over = verifying.model_copy(update={"verification": Verification(after_seconds=[60], done=1)})
    after = retention.finished_labels(
        the_spec, over, controller="c", retention=RetentionConfig(), stored_bytes=10
    )
    assert after[retention.PHASE_LABEL] == Phase.SUCCEEDED.value
    assert after[retention.EXPIRES_LABEL] == str(int(NOW.timestamp()))


@dataclass
class Returning:
    """A storage where ``back`` exists again; it confirms every delete."""

    back: set[str]
    name: str = "photos"
    max_keys_per_call: int | None = None
    deleted: list[str] = field(default_factory=list)

    async def delete(self, the_keys: Sequence[str]) -> ChunkResult:
        self.deleted += the_keys
        self.back -= set(the_keys)
        await asyncio.sleep(0)
        return ChunkResult.from_reply(the_keys, the_keys, {})

    async def exists(self, the_keys: Sequence[str]) -> ExistsResult:
        await asyncio.sleep(0)
        return ExistsResult.from_reply(
            the_keys, existing=self.back & set(the_keys), missing=set(the_keys) - self.back
        )

    async def aclose(self) -> None:
        """Nothing to release."""


def recheck_context(
    sink: FakeSink, events: Events, status: FileCleanupStatus, now: datetime.datetime
) -> ObjectContext:
    found = context(sink, events, status)
    return dataclasses.replace(found, clock=lambda: now)


async def test_a_recheck_deletes_what_came_back_counts_it_and_says_so() -> None:
    storage = Returning(back={"k/3", "k/7"})
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
        }
    )
    metrics = Metrics()
    reconciler = Reconciler(config, {"photos": limited(storage)}, metrics, jitter=lambda: 0.0)  # type: ignore[arg-type]
    status = with_verification(DONE.model_copy(update={"total": 10, "deleted": 10}), [60, 3600])
    sink, events = FakeSink(), Events()
    first = await reconciler.run(recheck_context(sink, events, status, NOW + datetime.timedelta(minutes=1)))
    (checked,) = sink.written
    assert checked.verification is not None
    assert (checked.verification.done, checked.verification.resurrected) == (1, 2)
    assert checked.verification.resurrected_keys == ["k/3", "k/7"]
    assert checked.verification.next_time == NOW + datetime.timedelta(hours=1)
    assert (
        checked.verification.last
        == "re-check 1 of 2: 2 of 10 keys were found again (e.g. k/3, k/7); 2 deleted again, 0 not"
    )
    assert storage.deleted == ["k/3", "k/7"]
    assert events == [("Warning", "Resurrected", checked.verification.last)]
    assert first.requeue_after == pytest.approx(3600 - 60)
    assert first.labels[retention.PHASE_LABEL] == retention.VERIFYING
    assert b'filecleanup_resurrected_keys_total{storage="photos"} 2.0' in _metrics(metrics)

    last = await reconciler.run(recheck_context(sink, events, checked, NOW + datetime.timedelta(hours=1)))
    final = sink.written[-1].verification
    assert final is not None
    assert (final.done, final.next_time, final.resurrected) == (2, None, 2)
    assert final.last == "re-check 2 of 2: none of the 10 keys was found again"
    assert events[-1] == ("Normal", "Reverified", final.last)
    assert last.requeue_after is None
    assert last.labels[retention.PHASE_LABEL] == Phase.SUCCEEDED.value


def _metrics(metrics: Metrics) -> bytes:
    from prometheus_client import generate_latest  # noqa: PLC0415  (one test reads them)

    return generate_latest(metrics.registry)


async def test_a_storage_that_cannot_check_ends_its_rechecks() -> None:
    """An http storage without dryRunUrl can tell nothing: said once, and no more re-checks."""
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
        }
    )
    reconciler = Reconciler(config, {"photos": limited(FakeStorage())}, Metrics(), jitter=lambda: 0.0)
    status = with_verification(DONE.model_copy(update={"total": 10, "deleted": 10}), [60, 3600])
    sink, events = FakeSink(), Events()
    after = await reconciler.run(recheck_context(sink, events, status, NOW + datetime.timedelta(minutes=1)))
    final = sink.written[-1].verification
    assert final is not None
    assert final.next_time is None
    assert "cannot tell which keys exist" in final.last
    assert after.requeue_after is None
