"""Reading manifests and reports as streams, their progress as byte ranges, and the checks: pure logic
over an in-memory object store that may return short reads."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.manifests import (
    MAX_LINE_BYTES,
    Line,
    ManifestError,
    SourceRound,
    advance,
    check,
    format_intervals,
    lines,
    parse_intervals,
    report_key,
    segment,
)
from filecleanup.models import ManifestProgress
from filecleanup.storage.base import ChunkResult

# Any text a key may hold, and what a line may hold around it.
KEY_TEXT = st.text(st.characters(exclude_characters="\n\r\t", exclude_categories=["Cs"]), max_size=30)


class MemoryStore:
    """An object store that answers at most ``most`` bytes per read, as a storage may."""

    def __init__(self, data: bytes, most: int | None = None) -> None:
        self.data = data
        self.most = most
        self.reads = 0

    async def read(self, key: str, offset: int, size: int) -> bytes:  # noqa: ARG002  (one object)
        self.reads += 1
        return self.data[offset : offset + min(size, self.most or size)]

    async def write(self, key: str, data: bytes) -> None:  # noqa: ARG002  (one object)
        self.data = data


def read_all(store: MemoryStore, offset: int = 0) -> list[Line]:
    async def collect() -> list[Line]:
        return [line async for line in lines(store, "m", offset)]

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


def test_a_report_line_is_a_key_and_its_error() -> None:
    data = segment([("a/b.jpg", "503 from\nthe storage"), ("c d.jpg", "")])
    assert data == b"a/b.jpg\t503 from the storage\nc d.jpg\t\n"
    assert [(line.key, line.error) for line in read_all(MemoryStore(data))] == [
        ("a/b.jpg", "503 from the storage"),
        ("c d.jpg", ""),
    ]


def test_a_line_that_is_not_utf8_is_named_by_its_offset() -> None:
    with pytest.raises(ManifestError, match="the line at byte 6 is not UTF-8"):
        read_all(MemoryStore(b"a.jpg\nb\xff.jpg\nc.jpg\n", 4))


@pytest.mark.parametrize("most", [None, 1000])  # the line within one read, or across many
def test_a_line_longer_than_a_key_can_be_stops_the_read(most: int | None) -> None:
    store = MemoryStore(b"ok\n" + b"x" * (MAX_LINE_BYTES * 30) + b"\n", most)
    with pytest.raises(ManifestError, match="a line at byte 3 is longer than a key can be"):
        read_all(store)
    assert store.reads < 10  # it stopped: the rest of the object was not read


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
    checked = asyncio.run(check(MemoryStore(manifest, 9), "m", "t/a/", shown=2))
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
        part = SourceRound(MemoryStore(data, 50), "m", progress, chunk_size=3)
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


def test_report_keys_stay_next_to_the_manifest() -> None:
    assert (
        report_key("tenants/a/albums/1/m.txt", "album-1", 3, 12)
        == "tenants/a/albums/1/m.txt.report/album-1/round-0003/00012"
    )
