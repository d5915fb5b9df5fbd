"""Layer decide. Where one object's deletion stands during a round: which keys are pending, deleted or
failed, and how that is rebuilt from status (its durable form) after a restart or for a redrive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from filecleanup.api.indexes import IndexRangeError, parse_ranges
from filecleanup.api.models import MAX_LISTED_FAILED_KEYS, FailedKey, FileCleanupSpec, FileCleanupStatus
from filecleanup.api.redaction import redact
from filecleanup.storage import holds
from filecleanup.storage.base import NOT_CONFIRMED, ChunkResult

EARLIER_ERROR = "failed in an earlier round"
MAX_ERROR_LENGTH = 256  # a storage's error text is kept short: status must stay small


class InvalidStatus(ValueError):  # noqa: N818  (the condition's reason: InvalidStatus)
    """A status the operator cannot have written for this object: it is not trusted."""


def readable_error(text: str) -> str:
    """A storage's error text as status shows it: secrets redacted, one printable line, short."""
    printable = "".join(character if character.isprintable() else " " for character in redact(text))
    return printable[:MAX_ERROR_LENGTH]


def unique_indexes(keys: Sequence[str]) -> list[int]:
    """The index of each key's first occurrence: duplicates are deleted once."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    return sorted(first.values())


@dataclass
class Progress:
    """The working state of one object during a round; status is its durable form."""

    keys: Sequence[str]
    total: int
    deleted: int = 0
    retries: int = 0
    redrives: int = 0
    retry_nonce: str | None = None
    chunk_size: int = 100
    pending: dict[int, None] = field(default_factory=dict)  # an ordered set
    failed: dict[int, str] = field(default_factory=dict)
    # Failed for good in this drive (a permanent error): not retried; a redrive sends them again.
    permanent: dict[int, tuple[str, int]] = field(default_factory=dict)  # -> (error, attempts)
    earlier_errors: dict[int, str] = field(default_factory=dict)
    whole_call_failures: int = 0
    released: bool = False  # the round sends held keys again (release_held)

    @classmethod
    def start(cls, spec: FileCleanupSpec) -> Progress:
        indexes = unique_indexes(spec.keys)
        return cls(
            keys=spec.keys,
            total=len(indexes),
            chunk_size=spec.chunk_size,
            retry_nonce=spec.retry_nonce,
            pending=dict.fromkeys(indexes),
        )

    @classmethod
    def resume(cls, spec: FileCleanupSpec, status: FileCleanupStatus) -> Progress:
        """Rebuild the round from its checkpoint: only what was not confirmed is sent again.

        Raises :class:`InvalidStatus` when the checkpoint does not describe this object's keys (a
        hand-edited status, or one written for other keys): nothing of it is trusted then.
        """
        listed = {item.key: item for item in status.failed_keys}
        listed_errors = {key: item.error for key, item in listed.items()}
        grouped_errors = {}
        try:
            pending = parse_ranges(status.pending_indexes, len(spec.keys))
            failed = parse_ranges(status.failed_indexes, len(spec.keys))
            permanent = parse_ranges(status.permanent_indexes, len(spec.keys))
            for group in status.failed_errors:
                grouped_errors.update(dict.fromkeys(parse_ranges(group.indexes, len(spec.keys)), group.error))
        except IndexRangeError as error:
            raise InvalidStatus(str(error)) from error
        distinct = unique_indexes(spec.keys)
        named = len(pending) + len(failed) + len(permanent)
        if (
            not set(pending) | set(failed) | set(permanent) <= set(distinct)
            or len(set(pending) | set(failed) | set(permanent)) != named
        ):
            raise InvalidStatus(
                "pendingIndexes, failedIndexes and permanentIndexes must name distinct keys, each once"
            )
        if status.total != len(distinct) or status.deleted + named != status.total:
            raise InvalidStatus(
                f"total {status.total} and deleted {status.deleted} do not add up with the indexes for "
                f"{len(distinct)} distinct keys"
            )

        def error_of(index: int) -> str:
            """The key's latest error, from failedKeys (the first 100) or failedErrors (all)."""
            return listed_errors.get(spec.keys[index]) or grouped_errors.get(index, EARLIER_ERROR)

        if status.chunk_size is not None and not 1 <= status.chunk_size <= spec.chunk_size:
            raise InvalidStatus(
                f"chunkSize {status.chunk_size} is not between 1 and the spec's {spec.chunk_size}"
            )
        return cls(
            keys=spec.keys,
            total=status.total,
            deleted=status.deleted,
            retries=status.retries,
            redrives=status.redrives,
            retry_nonce=spec.retry_nonce,
            chunk_size=status.chunk_size or spec.chunk_size,
            pending=dict.fromkeys(pending),
            failed={i: error_of(i) for i in failed},
            permanent={
                i: (error_of(i), listed[spec.keys[i]].attempts if spec.keys[i] in listed else 1)
                for i in permanent
            },
            earlier_errors={i: error_of(i) for i in pending} if status.retries or status.redrives else {},
        )

    @classmethod
    def redrive(cls, spec: FileCleanupSpec, status: FileCleanupStatus) -> Progress:
        """A Failed object again: only its failed keys, a fresh retry budget, the spec's chunk size."""
        if not status.total:  # rejected before it started: nothing was tried yet
            started = cls.start(spec)
            started.redrives = status.redrives + 1
            return started
        failed = cls.resume(spec, status)
        return cls(
            keys=spec.keys,
            total=failed.total,
            deleted=failed.deleted,
            redrives=status.redrives + 1,
            retry_nonce=spec.retry_nonce,
            chunk_size=spec.chunk_size,
            pending=dict.fromkeys(sorted([*failed.failed, *failed.pending, *failed.permanent])),
            earlier_errors={
                **failed.earlier_errors,
                **failed.failed,
                **{i: error for i, (error, _) in failed.permanent.items()},
            },
        )

    def release_held(self) -> None:
        """Send the keys the storage held again (an object that was Held): their hold may be over."""
        held = sorted(i for i, (error, _) in self.permanent.items() if holds.is_held(error))
        for index in held:
            error, _ = self.permanent.pop(index)
            self.earlier_errors[index] = error
            self.pending[index] = None
        self.released = bool(held)

    def chunks(self) -> list[list[int]]:
        ordered = list(self.pending)
        return [ordered[at : at + self.chunk_size] for at in range(0, len(ordered), self.chunk_size)]

    def chunk_keys(self, chunk: Sequence[int]) -> list[str]:
        return [self.keys[index] for index in chunk]

    def record(self, chunk: Sequence[int], result: ChunkResult) -> None:
        """Apply one call's outcome; a key not confirmed as deleted failed this round."""
        for index in chunk:
            if index not in self.pending:
                continue
            del self.pending[index]
            key = self.keys[index]
            if key in result.deleted:
                self.deleted += 1
                self.earlier_errors.pop(index, None)
            elif key in result.permanent:
                self.permanent[index] = (readable_error(result.failed[key]), self.retries + 1)
                self.earlier_errors.pop(index, None)
            else:
                self.failed[index] = readable_error(result.failed.get(key, NOT_CONFIRMED))
        if result.whole_call_failed:
            self.whole_call_failures += 1

    @property
    def failed_count(self) -> int:
        """Keys whose latest attempt failed: this round's failures, plus, in a retry round, the keys
        not yet sent again (each failed in the round before)."""
        return len(self.failed) + len(self.permanent) + (len(self.pending) if self.retrying else 0)

    @property
    def counts(self) -> Counts:
        return Counts(
            total=self.total,
            deleted=self.deleted,
            failed=self.failed_count,
            retries=self.retries,
            redrives=self.redrives,
            retry_nonce=self.retry_nonce,
            chunk_size=self.chunk_size,
        )

    def too_many_failed(self, max_failed_keys: int | None) -> bool:
        """Whether more keys than ``max_failed_keys`` failed for good (spec.maxFailedKeys)."""
        return max_failed_keys is not None and len(self.permanent) > max_failed_keys

    @property
    def retrying(self) -> bool:
        """Whether the pending keys all failed before: in a retry round, a redrive, or a round that
        sends held keys again."""
        return bool(self.retries or self.redrives or self.released)

    def begin_retry_round(self) -> None:
        """Retry only the failed keys. Halve the chunks after whole-call failures, so that one poison
        key cannot keep failing its neighbours and the failing keys get pinned down."""
        if self.whole_call_failures:
            self.chunk_size = max(1, self.chunk_size // 2)
        self.retries += 1
        self.earlier_errors = self.failed
        self.pending = dict.fromkeys(sorted(self.failed))
        self.failed = {}
        self.whole_call_failures = 0

    def failures(self) -> list[tuple[int, str, int]]:
        """Every failed key as (index, latest error, attempts), by position in spec.keys: this round's
        failures, those failed for good, and in a retry round the keys not yet sent again."""
        entries: list[tuple[int, str, int]] = [
            (i, error, self.retries + 1) for i, error in self.failed.items()
        ]
        entries.extend((i, error, attempts) for i, (error, attempts) in self.permanent.items())
        if self.retrying:
            entries.extend((i, self.earlier_errors.get(i, EARLIER_ERROR), self.retries) for i in self.pending)
        return sorted(entries)

    def listed_failures(
        self, entries: list[tuple[int, str, int]] | None = None
    ) -> tuple[list[FailedKey], int]:
        """The first failed keys by position in spec.keys, and how many more there are (of ``entries``,
        when the caller already has :meth:`failures`)."""
        entries = self.failures() if entries is None else entries
        listed = [
            FailedKey(key=self.keys[i], error=error, attempts=attempts)
            for i, error, attempts in entries[:MAX_LISTED_FAILED_KEYS]
        ]
        return listed, len(entries) - len(listed)


@dataclass
class Counts:
    """A deletion's counts, as status shows them (the fields of the same names)."""

    total: int
    deleted: int
    failed: int
    retries: int
    redrives: int
    retry_nonce: str | None
    chunk_size: int
