"""Manifests: the keys of a deletion too big for an object, kept in the storage itself (one key per
line, UTF-8), as S3 Batch Operations keeps them. The object only points to the manifest and stays a
few KB, whatever the number of keys.

A manifest is read as a stream, a part at a time, never held whole. A run first reads it through once
to check every key (its rules, and the storage's policy for the object's namespace) and to count
them: one bad key, and nothing is deleted. Then rounds of deletion: round 0 reads the manifest; a
retry round reads the failure report of the round before it. Progress is a byte offset in the source
being read, with the byte ranges past it already done (calls finish out of order); a checkpoint first
writes the failures recorded since the last one as a report segment, then the status, so a killed
operator resumes exactly: nothing confirmed at the checkpoint is sent again, and the counts hold.

A report segment holds one failed key per line, with its error after a tab (a key has no control
characters): ``{manifest}.report/{object}/round-{n}/{segment}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from filecleanup.keys import key_problem
from filecleanup.models import MAX_LISTED_FAILED_KEYS, FailedKey, ManifestProgress
from filecleanup.progress import readable_error
from filecleanup.storage.base import NOT_CONFIRMED, ChunkResult, ObjectStore

READ_BLOCK_BYTES = 256 * 1024
MAX_LINE_BYTES = 4 * 1024 + 512  # a key of 1,024 characters, escaped at worst, with its error


class ManifestError(ValueError):
    """A manifest that cannot be read as one: a line too long, or not UTF-8."""


class Line(NamedTuple):  # a million of them per manifest: a tuple is the cheapest to make
    start: int  # byte offset of the line in its source
    end: int  # byte offset just past its line feed
    key: str
    error: str  # in a report segment: the key's error in the round before


# Byte ranges ("100-200,300-400": start inclusive, end exclusive) already done past the offset.


def parse_intervals(text: str) -> list[tuple[int, int]]:
    intervals = []
    for part in filter(None, text.split(",")):
        start, _, end = part.partition("-")
        if not (start.isascii() and start.isdigit() and end.isascii() and end.isdigit()) or int(end) <= int(
            start
        ):
            raise ManifestError(f"bad byte range {part[:40]!r}")
        intervals.append((int(start), int(end)))
    return sorted(intervals)


def format_intervals(intervals: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{start}-{end}" for start, end in intervals)


def advance(offset: int, done: Sequence[tuple[int, int]]) -> tuple[int, list[tuple[int, int]]]:
    """Move the offset over the done ranges that reach it; merge the rest."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(done):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    while merged and merged[0][0] <= offset:
        offset = max(offset, merged.pop(0)[1])
    return offset, merged


async def lines(store: ObjectStore, key: str, offset: int) -> AsyncIterator[Line]:
    """The lines of ``key`` from ``offset``, read a block at a time; a line is a key, or in a report
    segment a key, a tab and its error. A carriage return before the line feed is dropped; an empty
    line has an empty key."""
    buffer = b""
    position = offset  # where ``buffer`` starts in the source
    while True:
        block = await store.read(key, position + len(buffer), READ_BLOCK_BYTES)
        buffer += block
        cut = buffer.rfind(b"\n") + 1 if block else len(buffer)  # the last line may lack its line feed
        for line in _split(buffer[:cut], position):
            yield line
        buffer, position = buffer[cut:], position + cut
        if len(buffer) > MAX_LINE_BYTES:
            raise ManifestError(f"a line at byte {position} is longer than a key can be")
        if not block:
            return


def _split(raw: bytes, start: int) -> list[Line]:
    """The whole lines of ``raw`` (which starts at byte ``start`` of its source), decoded at once."""
    if not raw:
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        raise ManifestError(f"the line at byte {start + line_start} is not UTF-8") from error
    pieces = text.split("\n")  # after the last line feed: "", or the last line if it has none
    # Byte offsets: an ASCII line is as long in bytes as in characters (the common case, and fast).
    ascii_only = raw.isascii()
    result = []
    at = start
    for number, piece in enumerate(pieces, 1):
        feed = number < len(pieces)
        if not feed and not piece:
            break
        size = len(piece) if ascii_only else len(piece.encode())
        if size > MAX_LINE_BYTES:
            raise ManifestError(f"a line at byte {at} is longer than a key can be")
        end = at + size + feed
        key, _, reason = piece.removesuffix("\r").partition("\t")
        result.append(Line(at, end, key, reason))
        at = end
    return result


@dataclass(frozen=True)
class Chunk:
    lines: list[Line]

    @property
    def span(self) -> tuple[int, int]:
        return self.lines[0].start, self.lines[-1].end


@dataclass
class Checked:
    """What reading a manifest through found."""

    total: int = 0
    problems: list[str] = field(default_factory=list)  # the first few, each naming its line
    problem_count: int = 0


async def check(store: ObjectStore, key: str, prefix: str, shown: int = 3) -> Checked:
    """Read the manifest through: count its keys, and find those that break the key rules or fall
    outside the policy's ``prefix``."""
    checked = Checked()
    async for line in lines(store, key, 0):
        if not line.key:
            continue
        checked.total += 1
        problem = key_problem(line.key) or (None if line.key.startswith(prefix) else f"outside {prefix!r}")
        if problem is not None:
            checked.problem_count += 1
            if len(checked.problems) < shown:
                checked.problems.append(f"line {checked.total}: {problem}")
    return checked


def report_prefix(manifest: str, name: str, round_number: int) -> str:
    """Where the failure report of a round goes: next to the manifest, so under the same policy."""
    return f"{manifest}.report/{name}/round-{round_number:04d}/"


def report_key(manifest: str, name: str, round_number: int, segment: int) -> str:
    return f"{report_prefix(manifest, name, round_number)}{segment:05d}"


class SourceRound:
    """The part of a round that reads one source (the manifest, or one segment of the report of the
    round before), as ``rounds.send_chunks`` sends it: it records the outcomes into ``progress``
    and keeps the failures until the next checkpoint writes them as a report segment."""

    def __init__(self, store: ObjectStore, source: str, progress: ManifestProgress, chunk_size: int) -> None:
        self._store = store
        self._source = source
        self.progress = progress
        self._chunk_size = chunk_size
        self._done = parse_intervals(progress.done)
        self.failures: list[tuple[str, str]] = []  # not yet in a report segment
        self.deleted = 0  # confirmed in this run
        self.listed: list[FailedKey] = []  # the first failures, for status
        self.whole_call_failures = 0

    async def chunks(self) -> AsyncIterator[Chunk]:
        pending: list[Line] = []
        async for line in lines(self._store, self._source, self.progress.offset):
            if not line.key or any(start <= line.start < end for start, end in self._done):
                continue
            pending.append(line)
            if len(pending) == self._chunk_size:
                yield Chunk(pending)
                pending = []
        if pending:
            yield Chunk(pending)

    def keys(self, chunk: Chunk) -> list[str]:
        return [line.key for line in chunk.lines]

    def record(self, chunk: Chunk, result: ChunkResult) -> None:
        progress = self.progress
        for line in chunk.lines:
            progress.sent += 1
            if line.key in result.deleted:
                self.deleted += 1
                continue
            error = readable_error(result.failed.get(line.key, NOT_CONFIRMED))
            progress.failed_now += 1
            if line.key in result.permanent:
                progress.permanent_now += 1
            self.failures.append((line.key, error))
            if len(self.listed) < MAX_LISTED_FAILED_KEYS:
                self.listed.append(FailedKey(key=line.key, error=error, attempts=progress.round + 1))
        if result.whole_call_failed:
            self.whole_call_failures += 1
        progress.offset, self._done = advance(progress.offset, [*self._done, chunk.span])
        progress.done = format_intervals(self._done)


def segment(failures: Sequence[tuple[str, str]]) -> bytes:
    """A report segment: a failed key per line, a tab, its error (on one line)."""
    return "".join(f"{key}\t{' '.join(error.splitlines())}\n" for key, error in failures).encode()
