"""What stops a round in mid-flight, for both sources of keys (an object's own keys and a manifest),
in process: the storage holds a call at a gate while the test suspends the object, pauses the
operator, moves the clock past the deadline or makes too many keys fail for good; then lets it go.
Nothing races a latency: every midpoint is held."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from filecleanup.api.config import OperatorConfig
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import FileCleanupSpec, FileCleanupStatus, Phase, Reason
from filecleanup.run import rounds
from filecleanup.run.api_reach import ApiReachability
from filecleanup.run.context import Next, ObjectContext
from filecleanup.run.reconciler import Reconciler
from filecleanup.storage.base import ConcurrencyLimited
from filecleanup.storage.limits import Limiter
from tests.support.memory_storage import MemoryStorage
from tests.unit.test_reconciler import Events, FakeSink

KEYS = [f"t/albums/{i:02d}.jpg" for i in range(12)]
MANIFEST = "t/albums/m.keys"
HELD_AT = 4  # the call held: three chunks answered before it


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@dataclass
class Setup:
    storage: MemoryStorage
    sink: FakeSink
    events: Events
    clock: Clock
    paused: set[str]
    reconciler: Reconciler

    def context(self, spec: dict[str, Any], status: FileCleanupStatus | None = None) -> ObjectContext:
        return ObjectContext(
            spec=FileCleanupSpec.model_validate(spec),
            status=status or FileCleanupStatus(),
            namespace="albums",
            name="album-1",
            generation=1,
            sink=self.sink,
            post_event=lambda kind, reason, message: self.events.append((kind, reason, message)),
            logger=logging.getLogger("test"),
            clock=self.clock,
        )


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    key_file = tmp_path / "report-key"
    key_file.write_text("k" * 32)
    config = OperatorConfig.model_validate(
        {
            "defaultStorage": "photos",
            "chunksInFlightPerObject": 1,  # one call at a time: what is sent after the stop is exact
            "statusIntervalSeconds": 0,  # a checkpoint after every call: a suspension is seen at once
            "reportKeyFile": str(key_file),
            "storages": {
                "photos": {
                    "type": "filesystem",
                    "root": "/unused",
                    "policy": {"allowedNamespaces": "*", "keyPrefix": "t/{namespace}/"},
                }
            },
        }
    )
    storage = MemoryStorage({MANIFEST: "".join(f"{k}\n" for k in KEYS).encode()}, hold_at=HELD_AT)
    paused = set[str]()
    limited = ConcurrencyLimited(storage, Limiter(4), Metrics())
    metrics = Metrics()
    api = ApiReachability(metrics, first_retry_seconds=0.001, max_retry_seconds=0.002)
    reconciler = Reconciler(
        config, {"photos": limited}, metrics, jitter=lambda: 0.0, paused=lambda: frozenset(paused), api=api
    )
    return Setup(storage, FakeSink(), Events(), Clock(), paused, reconciler)


SOURCES = {
    "keys": {"keys": KEYS, "chunkSize": 1},
    "manifest": {"manifest": {"key": MANIFEST}, "chunkSize": 1},
}


async def until(condition: Callable[[], bool]) -> None:
    """Until ``condition`` holds; a test that waits for ever is a failure, not a hang."""
    async with asyncio.timeout(60):
        while not condition():  # noqa: ASYNC110  (the fakes have no event to wait on)
            await asyncio.sleep(0.001)


async def run_held(setup: Setup, spec: dict[str, Any], while_held: Any) -> FileCleanupStatus:
    """One run whose fourth call waits at the gate while ``while_held()`` changes the world; then the
    gate opens. The status the run wrote last."""
    run = asyncio.create_task(setup.reconciler.run(setup.context(spec)))
    await setup.storage.held.wait()
    while_held()
    setup.storage.gate.set()
    await run
    return setup.sink.written[-1]


@pytest.mark.parametrize("source", SOURCES)
async def test_a_suspension_in_mid_round_stops_it_after_the_call_in_flight(setup: Setup, source: str) -> None:
    spec = SOURCES[source]

    def suspend() -> None:
        setup.sink.spec = FileCleanupSpec.model_validate({**spec, "suspend": True})

    status = await run_held(setup, spec, suspend)
    assert (status.phase, status.conditions[0].reason) == (Phase.SUSPENDED, Reason.SUSPENDED)
    # The call in flight finished; a checkpoint is written in the background, so the call that started
    # before its reply came back (with the spec) may go too, and nothing after it.
    assert setup.storage.sent in (KEYS[:HELD_AT], KEYS[: HELD_AT + 1])
    assert status.deleted == len(setup.storage.sent)

    setup.sink.spec = None  # resumed: the rest, and nothing confirmed sent again
    await setup.reconciler.run(setup.context(spec, status))
    assert setup.sink.written[-1].phase == Phase.SUCCEEDED
    assert sorted(setup.storage.sent) == sorted(KEYS)


@pytest.mark.parametrize("source", SOURCES)
async def test_the_operators_pause_in_mid_round_stops_it_after_the_call_in_flight(
    setup: Setup, source: str
) -> None:
    status = await run_held(setup, SOURCES[source], lambda: setup.paused.add("photos"))
    assert (status.phase, status.conditions[0].reason) == (Phase.SUSPENDED, Reason.OPERATOR_PAUSED)
    assert setup.storage.sent == KEYS[:HELD_AT]
    assert status.deleted == HELD_AT


@pytest.mark.parametrize("source", SOURCES)
async def test_a_deadline_passed_in_mid_round_fails_it_with_the_counts(setup: Setup, source: str) -> None:
    spec = {**SOURCES[source], "activeDeadlineSeconds": 60}

    def past_the_deadline() -> None:
        setup.clock.now += datetime.timedelta(seconds=61)

    status = await run_held(setup, spec, past_the_deadline)
    assert (status.phase, status.conditions[-1].reason) == (Phase.FAILED, Reason.DEADLINE_EXCEEDED)
    assert setup.storage.sent == KEYS[:HELD_AT]
    assert f"deleted {HELD_AT} of {len(KEYS)}, {len(KEYS) - HELD_AT} not deleted" in status.message


@pytest.mark.parametrize("source", SOURCES)
async def test_too_many_keys_failed_for_good_in_mid_round_fails_it_at_once(setup: Setup, source: str) -> None:
    setup.storage.failing, setup.storage.for_good = frozenset(KEYS[:2]), True
    await setup.reconciler.run(setup.context({**SOURCES[source], "maxFailedKeys": 1}))
    status = setup.sink.written[-1]
    assert (status.phase, status.conditions[-1].reason) == (Phase.FAILED, Reason.MAX_FAILED_KEYS_EXCEEDED)
    assert setup.storage.sent == KEYS[:2]  # the second key failing for good stopped it: no third call
    assert "2 keys failed for good, more than maxFailedKeys (1)" in status.message


@pytest.mark.parametrize("source", SOURCES)
async def test_an_object_deleted_while_its_checkpoint_is_written_ends_the_run_quietly(
    setup: Setup, source: str
) -> None:
    """A failed checkpoint ends the round as itself (ObjectGone), not inside the round's task group:
    the run ends as for any object deleted meanwhile, and no call starts after it."""
    setup.sink.gone = True
    setup.storage.hold_at = None
    assert await setup.reconciler.run(setup.context(SOURCES[source])) == Next()
    assert len(setup.storage.sent) <= 2  # the call whose checkpoint failed, and one already under way
    assert setup.events == []


@pytest.mark.parametrize("source", SOURCES)
async def test_an_unreadable_status_is_said_and_the_run_starts_over_for_either_source(
    setup: Setup, source: str
) -> None:
    """The handler replaces a status the models refuse; the run says so once, before any call, and
    starts from the first key, for an object's own keys and a manifest alike."""
    setup.storage.hold_at = None
    context = setup.context(SOURCES[source])
    unreadable = ObjectContext(**{**vars(context), "status_problem": "status.deleted: not an integer"})
    await setup.reconciler.run(unreadable)
    assert [reason for _, reason, _ in setup.events] == [Reason.INVALID_STATUS, "Completed"]
    first, last = setup.sink.written[0], setup.sink.written[-1]
    assert first.conditions[0].reason == Reason.INVALID_STATUS
    assert "status.deleted: not an integer" in first.conditions[0].message
    assert (last.phase, last.deleted, sorted(setup.storage.sent)) == (
        Phase.SUCCEEDED,
        len(KEYS),
        sorted(KEYS),
    )


@pytest.mark.parametrize("source", SOURCES)
async def test_a_redrive_is_announced_and_counted_for_either_source(setup: Setup, source: str) -> None:
    """A Failed object redriven (a new retryNonce): a Redriven event, status.redrives counted, a new
    start time, and only what is left is sent: an object's key that failed for good, or a manifest
    refused when it was checked (one key outside the policy), checked again once it is fixed."""
    setup.storage.hold_at = None
    spec = SOURCES[source]
    expected: tuple[Reason, list[str]]
    if source == "manifest":
        setup.storage.objects[MANIFEST] += b"elsewhere/x.jpg\n"
        expected = (Reason.FORBIDDEN, [])
    else:
        setup.storage.failing, setup.storage.for_good = frozenset(KEYS[:1]), True
        expected = (Reason.PERMANENT_ERRORS, KEYS)
    await setup.reconciler.run(setup.context(spec))
    failed = setup.sink.written[-1]
    assert (failed.phase, failed.conditions[-1].reason, setup.storage.sent) == (Phase.FAILED, *expected)

    setup.storage.objects[MANIFEST] = "".join(f"{k}\n" for k in KEYS).encode()
    setup.storage.failing = frozenset()
    setup.clock.now += datetime.timedelta(hours=1)
    setup.events.clear()
    await setup.reconciler.run(setup.context({**spec, "retryNonce": "1"}, failed))
    status = setup.sink.written[-1]
    assert (status.phase, status.redrives, status.start_time) == (Phase.SUCCEEDED, 1, setup.clock.now)
    assert [reason for _, reason, _ in setup.events] == ["Redriven", "Completed"]
    assert sorted(setup.storage.sent) == sorted(KEYS + expected[1][:1])


@pytest.mark.parametrize("source", SOURCES)
async def test_an_api_outage_in_mid_round_is_waited_out_with_nothing_sent_twice(
    setup: Setup, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Status writes the API server does not take are written again, with the newest progress, once
    it is back: the round goes on, no key is sent twice, the counts are exact, and the log says it
    once each way, with no error."""
    caplog.set_level(logging.DEBUG)

    def api_down() -> None:
        setup.sink.unreachable = True

    run = asyncio.create_task(setup.reconciler.run(setup.context(SOURCES[source])))
    await setup.storage.held.wait()
    api_down()
    setup.storage.gate.set()
    await until(lambda: setup.sink.refused >= 5 or run.done())  # the writes are being tried again
    assert not run.done()
    setup.sink.unreachable = False
    await run

    status = setup.sink.written[-1]
    assert (status.phase, status.deleted, status.total) == (Phase.SUCCEEDED, len(KEYS), len(KEYS))
    assert setup.storage.sent == KEYS  # each once
    assert [reason for _, reason, _ in setup.events] == ["StatusDelayed", "Completed"]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "status writes" in r.getMessage()]
    assert [level for level, _ in said] == ["WARNING", "INFO", "WARNING"]  # the last: StatusDelayed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("source", SOURCES)
async def test_while_the_api_is_unreachable_a_round_holds_after_a_bound_of_unrecorded_keys(
    setup: Setup, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound, no new call starts until a checkpoint lands: a crash in an outage re-sends at
    most about that many keys. Once the API is back, the round goes on from where it held."""
    monkeypatch.setattr(rounds, "UNRECORDED_KEYS_BOUND", 3)
    run = asyncio.create_task(setup.reconciler.run(setup.context(SOURCES[source])))
    await setup.storage.held.wait()
    setup.sink.unreachable = True
    setup.storage.gate.set()
    await until(lambda: setup.sink.refused >= 3 or run.done())
    held = len(setup.storage.sent)
    refused = setup.sink.refused
    await until(lambda: setup.sink.refused >= refused + 10 or run.done())  # ten more tries later
    assert not run.done()
    assert len(setup.storage.sent) == held == HELD_AT + 2  # the held call's answer, then two more
    setup.sink.unreachable = False
    await run
    assert setup.sink.written[-1].phase == Phase.SUCCEEDED
    assert setup.storage.sent == KEYS
