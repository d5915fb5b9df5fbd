"""Layer run. Manifests: the keys of a deletion too big for an object, kept in the storage itself (one key
per line, UTF-8), as S3 Batch Operations keeps them. The object only points to the manifest and stays a
few KB, whatever the number of keys.

A manifest is read as a stream, a part at a time, never held whole. A run first reads it through once
to check every key (its rules, and the storage's policy for the object's namespace) and to count
them: one bad key, and nothing is deleted. That read pins the manifest's version (its ETag, or a
file's identity), and every later read must find the same version. Then rounds of deletion: round 0
reads the manifest; a retry round reads the failure report of the round before it. Progress is a byte
offset in the source being read, with the byte ranges past it already done (calls finish out of
order); a checkpoint first writes the failures recorded since the last one as a report segment, then
the status, so a killed operator resumes exactly: nothing confirmed at the checkpoint is sent again,
and the counts hold.

Nothing read back is trusted: every key is checked again as it is sent (gate.py), and each line of a
report segment carries a signature (HMAC-SHA256) with a key only the operator holds, over the object,
the round and the key, so a line anybody else wrote or copied from another object is found out.
A segment's line: the key, a tab, the signature, a tab, the key's error (a key has no control
characters): ``{manifest}.report/{namespace}/{object}/round-{n}/{segment}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from filecleanup.api import redaction
from filecleanup.api.config import MIN_REPORT_KEY_BYTES, OperatorConfig
from filecleanup.api.gate import KeyGate
from filecleanup.api.keys import key_problem
from filecleanup.api.models import MAX_LISTED_FAILED_KEYS, FailedKey, FileCleanupStatus, ManifestProgress
from filecleanup.api.wording import plural
from filecleanup.decide.progress import readable_error
from filecleanup.storage.base import (
    NOT_CONFIRMED,
    ChunkResult,
    ObjectChanged,
    ObjectMissing,
    ObjectPart,
    ObjectRefused,
    ObjectStore,
)

READ_BLOCK_BYTES = 256 * 1024
READ_AHEAD = 8  # reads in flight per source being read: a block takes one storage round trip
MAX_LINE_BYTES = 4 * 1024 + 512  # a key of 1,024 characters, escaped at worst, with its error
UTF8_BOM = b"\xef\xbb\xbf"  # some editors start a text file with it; it is no part of the first key
MAX_ROUNDS = 9999  # round-NNNN
MAX_SEGMENTS = 99999  # NNNNN
SIGNATURE_CHARACTERS = 32  # 128 bits of HMAC-SHA256, in hex


class ManifestError(ValueError):
    """A manifest or report that cannot be used as one: a line too long, not UTF-8, a report line
    without the operator's signature."""


# What ends the reading of a source for good (no retry helps): the run says so and stops.
SourceProblem = ManifestError | ObjectMissing | ObjectChanged | ObjectRefused


class Line(NamedTuple):  # a million of them per manifest: a tuple is the cheapest to make
    start: int  # byte offset of the line in its source
    end: int  # byte offset just past its line feed
    key: str
    rest: str  # after the key's tab, in a report segment: the signature, a tab, the key's error


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


class Source:
    """One object read as lines, pinned to one version: the one given, else the one first read. Any
    read that finds another raises :class:`ObjectChanged`."""

    def __init__(self, store: ObjectStore, key: str, version: str = "") -> None:
        self._store = store
        self.key = key
        self.version = version
        self.size = 0  # bytes read up to the end, once read through

    async def lines(self, offset: int) -> AsyncGenerator[Line, None]:
        """The lines from ``offset``, read a block at a time; a line is a key, or in a report segment
        a key, a tab and the rest. A UTF-8 byte order mark at the start is skipped; a carriage return
        before the line feed is dropped; an empty line has an empty key."""
        buffer = b""
        position = offset  # where ``buffer`` starts in the source
        async with contextlib.aclosing(self._blocks(offset)) as blocks:
            async for block in blocks:
                buffer += block
                if position == 0 and buffer.startswith(UTF8_BOM):
                    buffer, position = buffer[len(UTF8_BOM) :], len(UTF8_BOM)
                cut = buffer.rfind(b"\n") + 1 if block else len(buffer)  # the last line may lack its feed
                for line in _split(buffer[:cut], position):
                    yield line
                buffer, position = buffer[cut:], position + cut
                if len(buffer) > MAX_LINE_BYTES:
                    raise ManifestError(f"a line at byte {position} is longer than a key can be")
                if not block:
                    self.size = position
                    return

    async def _blocks(self, offset: int) -> AsyncGenerator[bytes, None]:
        """The bytes from ``offset`` a block at a time, in order, ending with an empty block (the end).
        Up to READ_AHEAD reads are in flight, so that reading keeps ahead of checking and deleting;
        each block used was read at the offset just past the one before it, as one read after another
        would be, and from the version pinned (the first read pins it when none was given)."""
        step, window = READ_BLOCK_BYTES, READ_AHEAD  # how far apart the reads ahead go, how many
        if not self.version:
            first = await self._store.read(self.key, offset, READ_BLOCK_BYTES)
            self.version = first.version
            yield first.data
            if not first.data:
                return
            offset += len(first.data)
            step, window = _next_reads(step, len(first.data))
        ahead: collections.deque[tuple[int, asyncio.Task[ObjectPart]]] = collections.deque()
        unused: list[asyncio.Task[ObjectPart]] = []
        try:
            while True:
                while len(ahead) < window:
                    at = ahead[-1][0] + step if ahead else offset
                    read = self._store.read(self.key, at, READ_BLOCK_BYTES, version=self.version)
                    ahead.append((at, asyncio.ensure_future(read)))
                _, reading = ahead.popleft()
                data = (await reading).data
                yield data
                if not data:
                    return
                offset += len(data)
                step, window = _next_reads(step, len(data))
                if ahead and ahead[0][0] != offset:  # read at offsets the store's answer did not end at
                    unused = [*_in_flight(unused), *(read for _, read in ahead)]
                    ahead.clear()
        finally:
            await _settled([*unused, *(read for _, read in ahead)])


def _next_reads(step: int, got: int) -> tuple[int, int]:
    """How far apart the next reads go (as far as the last block was long), and how many go at once:
    READ_AHEAD after a block as long as the one before it; else one (after the last block, most
    likely, or from a store that answers each read with another length)."""
    return got, READ_AHEAD if got == step else 1


def _in_flight(reads: list[asyncio.Task[ObjectPart]]) -> list[asyncio.Task[ObjectPart]]:
    """The reads not done yet; those done are let go, their outcome (an error too) taken."""
    for read in reads:
        if read.done() and not read.cancelled():
            read.exception()
    return [read for read in reads if not read.done()]


async def _settled(reads: list[asyncio.Task[ObjectPart]]) -> None:
    """Wait for reads whose outcome (an error too) is of no use any more. They are let finish, each
    within the storage's deadline, rather than cancelled: a request cancelled just after it connected
    stays in httpcore's pool for good, with its connection open. Only a reader cancelled itself
    cancels them (``gather`` passes the cancellation on)."""
    await asyncio.gather(*reads, return_exceptions=True)


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
        key, _, rest = piece.removesuffix("\r").partition("\t")
        result.append(Line(at, end, key, rest))
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
    version: str = ""  # the version read: every later read must find it
    size: int = 0


async def check(store: ObjectStore, key: str, gate: KeyGate, shown: int = 3) -> Checked:
    """Read the manifest through: count its keys, and find those that ``gate`` would refuse (the key
    rules, the policy's prefix)."""
    checked = Checked()
    source = Source(store, key)
    async with contextlib.aclosing(source.lines(0)) as lines:
        async for line in lines:
            if not line.key:
                continue
            checked.total += 1
            problem = gate.problem(line.key)
            if problem is not None:
                checked.problem_count += 1
                if len(checked.problems) < shown:
                    checked.problems.append(f"line {checked.total}: {problem}")
    checked.version, checked.size = source.version, source.size
    return checked


@dataclass(frozen=True)
class ReportPlace:
    """Where the failure reports of one object's manifest go: next to the manifest, so under the same
    policy, and apart for each object (by namespace and name)."""

    manifest: str
    namespace: str
    name: str

    def prefix(self, round_number: int) -> str:
        return f"{self.manifest}.report/{self.namespace}/{self.name}/round-{round_number:04d}/"

    def key(self, round_number: int, segment: int) -> str:
        return f"{self.prefix(round_number)}{segment:05d}"

    def problem(self) -> str | None:
        """Why no report of this object can ever be stored, or None (checked before anything is sent:
        a failure must always have a place to go)."""
        longest = self.key(MAX_ROUNDS, MAX_SEGMENTS)
        problem = key_problem(longest)
        if problem is None and any(len(part.encode()) > 255 for part in longest.split("/")):  # noqa: PLR2004
            problem = "a path segment is longer than 255 bytes"  # NAME_MAX on every common filesystem
        return None if problem is None else f"its failure reports cannot be stored at {longest!r}: {problem}"


class ReportSigner:
    """Signs and checks the lines of failure reports with a key only the operator holds: a report lies
    next to the manifest, where the tenant that wrote the manifest can write too."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_REPORT_KEY_BYTES:
            raise ValueError(f"a report key must have at least {MIN_REPORT_KEY_BYTES} bytes")
        self._secret = secret

    def _signature(self, place: ReportPlace, round_number: int, key: str) -> str:
        message = f"{place.namespace}\n{place.name}\n{place.manifest}\n{round_number}\n{key}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:SIGNATURE_CHARACTERS]

    def segment(self, place: ReportPlace, round_number: int, failures: Sequence[tuple[str, str]]) -> bytes:
        """A report segment: a failed key per line, a tab, its signature, a tab, its error (one line)."""
        return "".join(
            f"{key}\t{self._signature(place, round_number, key)}\t{' '.join(error.splitlines())}\n"
            for key, error in failures
        ).encode()

    def verified(self, place: ReportPlace, round_number: int, line: Line) -> bool:
        """Whether the line is one this operator wrote for this object and round."""
        signature, _, _ = line.rest.partition("\t")
        expected = self._signature(place, round_number, line.key)
        return hmac.compare_digest(signature.encode(), expected.encode())  # any text a tenant wrote


def report_signer(config: OperatorConfig) -> ReportSigner | None:
    """The signer of the configuration's reportKeyFile (surrounding whitespace is no part of the
    key), or None without one. Raises ``ValueError`` for a key too short to be secret."""
    if config.report_key_file is None:
        return None
    secret = config.report_key_file.read_bytes().strip()
    redaction.register(secret.decode(errors="replace"))
    return ReportSigner(secret)


class SourceRound:
    """The part of a round that reads one source (the manifest, or one segment of the report of the
    round before), as ``rounds.send_chunks`` sends it: it records the outcomes into ``progress``
    and keeps the failures until the next checkpoint writes them as a report segment. A source that
    cannot be read on (changed, gone, not a file, a line not signed) stops the reading: ``problem``."""

    def __init__(
        self,
        source: Source,
        progress: ManifestProgress,
        chunk_size: int,
        *,
        signed_by: tuple[ReportSigner, ReportPlace] | None = None,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self._source = source
        self._on_refused = on_refused  # the round stops: nothing more is sent
        self._signed_by = signed_by
        self.progress = progress
        self._chunk_size = chunk_size
        self._done = parse_intervals(progress.done)
        self.failures: list[tuple[str, str]] = []  # not yet in a report segment
        self.deleted = 0  # confirmed in this run
        self.listed: list[FailedKey] = []  # the first failures, for status
        self.whole_call_failures = 0
        self.refused: list[str] = []  # keys the gate refused, each with why
        self.problem: SourceProblem | None = None

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        pending: list[Line] = []
        try:
            async with contextlib.aclosing(self._source.lines(self.progress.offset)) as lines:
                async for line in lines:
                    if not line.key or any(start <= line.start < end for start, end in self._done):
                        continue
                    self._verify(line)
                    pending.append(line)
                    if len(pending) == self._chunk_size:
                        yield Chunk(pending)
                        pending = []
        except (ManifestError, ObjectMissing, ObjectChanged, ObjectRefused) as problem:
            self.problem = problem
            return
        if pending:
            yield Chunk(pending)

    def _verify(self, line: Line) -> None:
        if self._signed_by is None:
            return
        signer, place = self._signed_by
        if not signer.verified(place, self.progress.round - 1, line):
            raise ManifestError(
                f"the line at byte {line.start} of {self._source.key} is not one this operator wrote"
            )

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
            if line.key in result.refused:
                self.refused.append(f"{line.key!r}: {error}")
                self._on_refused()
            self.failures.append((line.key, error))
            if len(self.listed) < MAX_LISTED_FAILED_KEYS:
                self.listed.append(FailedKey(key=line.key, error=error, attempts=progress.round + 1))
        if result.whole_call_failed:
            self.whole_call_failures += 1
        progress.offset, self._done = advance(progress.offset, [*self._done, chunk.span])
        progress.done = format_intervals(self._done)


def progress_problem(status: FileCleanupStatus, place: ReportPlace) -> str | None:
    """Why a manifest's progress in status cannot be true, or None: status is written back by the
    API server, and whoever may patch it could point a run anywhere."""
    progress = status.manifest
    if progress is None:
        return None
    if not progress.checked:
        return None if progress == ManifestProgress() else "progress of a manifest not yet checked"
    return _count_problem(status, progress) or _place_problem(progress, place)


def _count_problem(  # noqa: PLR0911  (one rule, one message)
    status: FileCleanupStatus, progress: ManifestProgress
) -> str | None:
    if not 0 <= progress.round <= MAX_ROUNDS or not 0 <= progress.segments <= MAX_SEGMENTS:
        return "a round or segment number out of range"
    if status.total < 1 or progress.size < 1 or status.deleted > status.total:
        return f"counts that no checked manifest gives (total {status.total}, deleted {status.deleted})"
    if not 0 <= progress.permanent_now <= progress.failed_now <= progress.sent <= progress.round_total:
        return "the round's counts do not add up"
    if progress.round_total > status.total or (progress.round == 0 and progress.round_total != status.total):
        return f"a round of {plural(progress.round_total, 'key')} in a manifest of {status.total}"
    if progress.round == 0 and progress.sources != 1:
        return "round 0 reads the manifest alone"
    # Every round after the first is a retry or a redrive (which starts the retries again at 0).
    if progress.round < status.retries or (progress.round > 0 and not status.retries + status.redrives):
        return (
            f"round {progress.round} after {plural(status.retries, 'retry', 'retries')} and "
            f"{plural(status.redrives, 'redrive')}"
        )
    if not 0 <= progress.source <= progress.sources or progress.sources < 1:
        return "a source out of range"
    if progress.failed_now and not progress.segments:
        return "failed keys without a report"
    return None


def _place_problem(progress: ManifestProgress, place: ReportPlace) -> str | None:
    try:
        done = parse_intervals(progress.done)
    except ManifestError as error:
        return str(error)
    end = progress.size if progress.round == 0 else None
    if progress.offset < 0 or (end is not None and progress.offset > end):
        return "an offset outside the manifest"
    if any(start <= progress.offset or (end is not None and stop > end) for start, stop in done):
        return "done byte ranges outside the source"
    if progress.report not in {"", place.prefix(max(0, progress.round - 1)), place.prefix(progress.round)}:
        return "a report that is not this object's"
    return None
