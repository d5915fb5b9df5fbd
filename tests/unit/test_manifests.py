"""Reading manifests and reports as streams, their progress as byte ranges, and the checks: pure logic
over an in-memory object store that may return short reads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.config import StoragePolicy
from filecleanup.api.gate import KeyGate
from filecleanup.api.models import FileCleanupStatus, ManifestProgress
from filecleanup.run.manifests import (
    MAX_LINE_BYTES,
    READ_AHEAD,
    READ_BLOCK_BYTES,
    Line,
    ManifestError,
    ReportPlace,
    ReportSigner,
    Source,
    SourceRound,
    advance,
    check,
    format_intervals,
    parse_intervals,
    progress_problem,
)
from filecleanup.storage.base import ChunkResult, ObjectChanged, ObjectPart

# Any text a key may hold, and what a line may hold around it.
KEY_TEXT = st.text(st.characters(exclude_characters="\n\r\t", exclude_categories=["Cs"]), max_size=30)


class MemoryStore:
    """An object store that answers at most ``most`` bytes per read, as a storage may."""

    def __init__(self, data: bytes, most: int | None = None) -> None:
        self.data = data
        self.most = most
        self.reads = 0

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        self.reads += 1
        current = hashlib.sha256(self.data).hexdigest()
        if version and version != current:
            raise ObjectChanged(key)
        return ObjectPart(self.data[offset : offset + min(size, self.most or size)], current)

    async def write(self, key: str, data: bytes) -> None:  # noqa: ARG002  (one object)
        self.data = data


def read_all(store: MemoryStore, offset: int = 0) -> list[Line]:
    async def collect() -> list[Line]:
        return [line async for line in Source(store, "m").lines(offset)]

    return asyncio.run(collect())


@given(
    st.lists(st.tuples(KEY_TEXT, st.booleans()), max_size=40),
    st.booleans(),
    st.integers(min_value=1, max_value=64),
)
def test_lines_and_their_byte_offsets_survive_any_block_boundaries(
    content: list[tuple[str, bool]], final_feed: bool, most: int
) -> None:
    raw = "\n".join(key + ("\r" if crlf else "") for key, crlf in content)
    data = (raw + ("\n" if final_feed and content else "")).encode()
    found = read_all(MemoryStore(data, most))
    assert [line.key for line in found] == [key for key, _ in content][: len(found)]
    assert len(found) == len(content) - (content[-1] == ("", False) and not final_feed if content else 0)
    position = 0
    for line in found:  # the lines tile the data exactly
        assert line.start == position
        assert data[line.start : line.end].decode().rstrip("\n").removesuffix("\r") == line.key
        position = line.end
    assert position == len(data)


@given(st.lists(KEY_TEXT.filter(bool), min_size=1, max_size=30), st.data())
def test_reading_from_a_line_start_gives_the_rest(keys: list[str], data: st.DataObject) -> None:
    raw = "".join(f"{key}\n" for key in keys).encode()
    every = read_all(MemoryStore(raw, 7))
    at = data.draw(st.integers(min_value=0, max_value=len(every) - 1))
    assert read_all(MemoryStore(raw, 5), every[at].start) == every[at:]


SIGNER = ReportSigner(b"k" * 32)
PLACE = ReportPlace("t/a/m.txt", "team-a", "album-1")


def test_a_report_line_is_a_key_its_signature_and_its_error() -> None:
    data = SIGNER.segment(PLACE, 0, [("a/b.jpg", "503 from\nthe storage"), ("c d.jpg", "")])
    found = read_all(MemoryStore(data))
    assert [line.key for line in found] == ["a/b.jpg", "c d.jpg"]
    assert [line.rest.split("\t")[1] for line in found] == ["503 from the storage", ""]
    assert all(SIGNER.verified(PLACE, 0, line) for line in found)


@pytest.mark.parametrize(
    ("signer", "place", "round_number"),
    [
        (ReportSigner(b"x" * 32), PLACE, 0),  # another installation's key
        (SIGNER, ReportPlace("t/a/m.txt", "team-b", "album-1"), 0),  # another namespace's object
        (SIGNER, ReportPlace("t/a/m.txt", "team-a", "album-2"), 0),  # another object
        (SIGNER, PLACE, 1),  # another round
    ],
)
def test_a_report_line_signed_for_anything_else_is_not_verified(
    signer: ReportSigner, place: ReportPlace, round_number: int
) -> None:
    (line,) = read_all(MemoryStore(signer.segment(place, round_number, [("t/a/1.jpg", "x")])))
    assert not SIGNER.verified(PLACE, 0, line)


@given(KEY_TEXT, KEY_TEXT)
def test_no_line_written_without_the_key_is_verified(key: str, rest: str) -> None:
    """Whatever a tenant writes into a report, without the operator's key it is not a report line."""
    assert not SIGNER.verified(PLACE, 0, Line(0, 1, key, rest))


def test_a_byte_order_mark_is_no_part_of_the_first_key() -> None:
    data = b"\xef\xbb\xbft/a/1.jpg\nt/a/2.jpg\n"
    found = read_all(MemoryStore(data, 2))
    assert [line.key for line in found] == ["t/a/1.jpg", "t/a/2.jpg"]
    assert found[0].start == 3


def test_a_source_is_pinned_to_the_version_first_read() -> None:
    store = MemoryStore(b"t/a/1.jpg\n" * 100, 50)

    async def replace_midway() -> None:
        source = Source(store, "m")
        async for line in source.lines(0):
            if line.start == 500:
                store.data = b"t/b/victim.jpg\n" * 100

    with pytest.raises(ObjectChanged):
        asyncio.run(replace_midway())


class HeldStore(MemoryStore):
    """A memory store whose reads wait until the test lets them go: what is in flight can be seen."""

    def __init__(self, data: bytes, most: int | None = None) -> None:
        super().__init__(data, most)
        self.go = asyncio.Event()
        self.free_below = 0  # reads at offsets below this are not held
        self.in_flight = 0
        self.offsets: list[int] = []
        self.cancelled = 0
        self.new_read = asyncio.Event()

    async def made(self, reads: int) -> None:
        """Until that many reads were made."""
        while len(self.offsets) < reads:
            self.new_read.clear()
            await self.new_read.wait()

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        self.in_flight += 1
        self.offsets.append(offset)
        self.new_read.set()
        try:
            if offset >= self.free_below:
                await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        return await super().read(key, offset, size, version=version)


async def read_into_second_block(store: HeldStore) -> None:
    """Lines up to the first one in the second block: the reads ahead of it are then made."""
    async with contextlib.aclosing(Source(store, "m").lines(0)) as lines:
        async for line in lines:
            if line.start >= READ_BLOCK_BYTES:
                return


def test_reads_keep_ahead_of_the_lines_used() -> None:
    store = HeldStore(b"t/a/1.jpg\n" * (READ_BLOCK_BYTES * 2))

    async def held_reads() -> int:
        store.free_below = 1  # the first read goes through, the next ones are held
        reading = asyncio.ensure_future(read_into_second_block(store))
        await store.made(1 + READ_AHEAD)
        in_flight = store.in_flight
        store.go.set()
        await reading
        return in_flight

    assert asyncio.run(held_reads()) == READ_AHEAD
    assert store.offsets[: 1 + READ_AHEAD] == [n * READ_BLOCK_BYTES for n in range(1 + READ_AHEAD)]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30), st.integers(1, 300))
def test_whatever_lengths_a_store_answers_every_byte_is_read_once_in_order(
    answers: list[int], count: int
) -> None:
    """A store may answer a read with fewer bytes than asked, each time another number: the reads
    ahead are then at offsets no answer ended at, and only reads at the right offsets are used."""
    lengths = itertools.cycle(answers)

    class Varying(MemoryStore):
        async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
            self.most = next(lengths)
            return await super().read(key, offset, size, version=version)

    raw = b"".join(b"t/%d\n" % n for n in range(count))
    found = read_all(Varying(raw))
    assert [line.key for line in found] == [f"t/{n}" for n in range(count)]
    assert found[-1].end == len(raw)


def test_a_small_source_is_read_in_two_reads() -> None:
    """One block and the read that finds the end: no reads ahead past the end of a report segment."""
    store = MemoryStore(b"t/a/1.jpg\nt/a/2.jpg\n")
    assert len(read_all(store)) == 2
    assert store.reads == 2


def test_reads_ahead_are_let_finish_when_reading_stops_early() -> None:
    """Not cancelled: a request cancelled just after it connected would keep its connection open."""
    store = HeldStore(b"t/a/1.jpg\n" * (READ_BLOCK_BYTES * 2))
    store.free_below = 2 * READ_BLOCK_BYTES  # the first two blocks: the rest are held

    async def stop_early() -> bool:
        reading = asyncio.ensure_future(read_into_second_block(store))
        await store.made(1 + READ_AHEAD)
        for _ in range(100):
            await asyncio.sleep(0)
        waited = not reading.done()  # the reading stopped, and waits for its reads ahead
        store.go.set()
        await reading
        return waited

    assert asyncio.run(stop_early())
    assert store.cancelled == 0
    assert store.in_flight == 0


def test_a_line_that_is_not_utf8_is_named_by_its_offset() -> None:
    with pytest.raises(ManifestError, match="the line at byte 6 is not UTF-8"):
        read_all(MemoryStore(b"a.jpg\nb\xff.jpg\nc.jpg\n", 4))


@pytest.mark.parametrize("most", [None, 1000])  # the line within one read, or across many
def test_a_line_longer_than_a_key_can_be_stops_the_read(most: int | None) -> None:
    store = MemoryStore(b"ok\n" + b"x" * (MAX_LINE_BYTES * 30) + b"\n", most)
    with pytest.raises(ManifestError, match="a line at byte 3 is longer than a key can be"):
        read_all(store)
    assert store.reads < 10 + READ_AHEAD  # it stopped: the rest of the object (139 reads) was not read


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=20), st.integers(0, 100))
def test_advance_moves_over_what_is_contiguous_and_keeps_the_rest(
    spans: list[tuple[int, int]], offset: int
) -> None:
    done = [(start, start + length) for start, length in spans]
    moved, rest = advance(offset, done)
    covered = {byte for start, end in done for byte in range(start, end)}
    expected = offset
    while expected in covered:
        expected += 1
    assert moved == expected
    assert all(start > moved for start, _ in rest)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(rest))  # merged, sorted, disjoint
    assert {b for s, e in rest for b in range(s, e)} == {b for b in covered if b > moved}
    assert parse_intervals(format_intervals(rest)) == rest


@pytest.mark.parametrize("text", ["5-5", "7-3", "a-9", "1-", "-4", "1-2-3", "\u0661-\u0662", " 1-2"])
def test_byte_ranges_from_status_are_checked(text: str) -> None:
    with pytest.raises(ManifestError, match="bad byte range"):
        parse_intervals(text)


def test_check_counts_keys_and_names_the_first_bad_lines() -> None:
    manifest = b"t/a/1.jpg\n\nt/a/../x\nt/b/2.jpg\nt/a/3.jpg\r\nu/4.jpg\n"
    gate = KeyGate(StoragePolicy(allowed_namespaces="*", key_prefix="t/{namespace}/"), "a")
    checked = asyncio.run(check(MemoryStore(manifest, 9), "m", gate, shown=2))
    assert checked.total == 5
    assert checked.problem_count == 3
    assert checked.problems == [
        "line 2: a key must not contain a '..' path segment",
        "line 3: outside 't/a/'",
    ]


def run_source_round(
    data: bytes, progress: ManifestProgress, fail: set[str], permanent: frozenset[str] = frozenset()
) -> SourceRound:
    """Every chunk of the round sent, in a shuffled order as calls finish, with ``fail`` failing (those
    in ``permanent`` for good)."""

    async def go() -> SourceRound:
        part = SourceRound(Source(MemoryStore(data, 50), "m"), progress, chunk_size=3)
        chunks = [chunk async for chunk in part.chunks()]
        random.Random(7).shuffle(chunks)
        for chunk in chunks:
            keys = part.keys(chunk)
            part.record(
                chunk,
                ChunkResult.from_reply(
                    keys, [k for k in keys if k not in fail], dict.fromkeys(fail, "nope"), permanent
                ),
            )
        return part

    return asyncio.run(go())


def test_a_source_round_records_every_key_once_and_ends_at_the_end() -> None:
    keys = [f"k/{i}" for i in range(20)]
    data = "".join(f"{key}\n" for key in keys).encode()
    part = run_source_round(data, ManifestProgress(checked=True, round_total=20), {"k/4", "k/17"})
    assert (part.progress.offset, part.progress.done) == (len(data), "")
    assert (part.deleted, part.progress.sent, part.progress.failed_now) == (18, 20, 2)
    assert sorted(part.failures) == [("k/17", "nope"), ("k/4", "nope")]
    assert part.progress.permanent_now == 0


def test_a_source_round_counts_the_keys_failed_for_good() -> None:
    """What spec.maxFailedKeys holds a manifest's round to."""
    data = "".join(f"k/{i}\n" for i in range(20)).encode()
    progress = ManifestProgress(checked=True, round_total=20)
    part = run_source_round(data, progress, {"k/1", "k/4", "k/17"}, permanent=frozenset({"k/4", "k/17"}))
    assert (part.progress.failed_now, part.progress.permanent_now) == (3, 2)


def test_a_resumed_round_skips_what_was_done_past_the_offset() -> None:
    keys = [f"k/{i}" for i in range(12)]
    data = "".join(f"{key}\n" for key in keys).encode()
    starts = [data.index(f"{key}\n".encode()) for key in keys]
    # Done: the first three keys (offset), and keys 6-8 out of order.
    progress = ManifestProgress(checked=True, offset=starts[3], done=f"{starts[6]}-{starts[9]}")
    part = run_source_round(data, progress, set())
    assert part.deleted == 6  # keys 3-5 and 9-11 only
    assert part.progress.offset == len(data)


def test_report_keys_stay_next_to_the_manifest_apart_for_each_object() -> None:
    place = ReportPlace("tenants/a/albums/1/m.txt", "team-a", "album-1")
    assert place.key(3, 12) == "tenants/a/albums/1/m.txt.report/team-a/album-1/round-0003/00012"
    assert place.problem() is None


def test_a_manifest_whose_reports_could_never_be_stored_is_named() -> None:
    problem = ReportPlace("t/a/" + "m" * 250, "team-a", "album-1").problem()
    assert problem is not None
    assert "longer than 255 bytes" in problem


def test_a_report_segment_whose_lines_are_not_the_operators_stops_the_round() -> None:
    forged = b"t/b/victim.jpg\tx\n"
    progress = ManifestProgress(checked=True, round=1, round_total=1, size=10)
    part = SourceRound(Source(MemoryStore(forged), "s"), progress, 10, signed_by=(SIGNER, PLACE))

    async def take_all() -> list[object]:
        return [chunk async for chunk in part.chunks()]

    assert asyncio.run(take_all()) == []
    assert isinstance(part.problem, ManifestError)
    assert "not one this operator wrote" in str(part.problem)


def checked_status(**progress: object) -> FileCleanupStatus:
    fields: dict[str, object] = {"checked": True, "round_total": 10, "size": 100, "version": "v", **progress}
    return FileCleanupStatus(total=10, manifest=ManifestProgress.model_validate(fields))


def test_progress_that_a_run_could_have_written_is_trusted() -> None:
    assert progress_problem(FileCleanupStatus(), PLACE) is None
    assert progress_problem(checked_status(), PLACE) is None
    assert progress_problem(checked_status(offset=40, done="60-80", sent=5), PLACE) is None
    retry = checked_status(round=1, round_total=2, sources=1, segments=0, report=PLACE.prefix(0))
    assert progress_problem(retry.model_copy(update={"retries": 1}), PLACE) is None
    assert progress_problem(retry.model_copy(update={"redrives": 1}), PLACE) is None


@pytest.mark.parametrize(
    "forged",
    [
        {"checked": False, "round_total": 1},  # a status patch of a manifest never checked
        {"round_total": 1},  # "checked: true, roundTotal: 1": deleted 1 of 0
        {"sent": 11},
        {"failed_now": 2, "sent": 1},
        {"failed_now": 1, "sent": 1, "segments": 0},
        {"offset": 101},
        {"done": "90-120"},
        {"done": "5-9", "offset": 10},
        {"sources": 3},
        {"round": 1, "sources": 1, "source": 2},
        {"round": 10_000},
        {"report": "t/b/elsewhere.report/"},
        {"round": 1, "sources": 1, "round_total": 1},  # a retry round that no retry began
        {"size": 0},
    ],
)
def test_progress_no_run_could_have_written_is_not_trusted(forged: dict[str, object]) -> None:
    assert progress_problem(checked_status(**forged), PLACE) is not None
