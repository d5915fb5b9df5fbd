"""Layer api. The FileCleanup API as pydantic models. The CRD in ``crds/`` is the schema's source; a test
checks that these models agree with it (field names, defaults and limits)."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from filecleanup.api.keys import MAX_KEY_LENGTH, key_problem

GROUP = "filecleanup.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FileCleanup"
PLURAL = "filecleanups"

MAX_KEYS = 10_000
MAX_LISTED_FAILED_KEYS = 100
# status.failedErrors: the failed keys grouped by error; past this many errors the rest share a group.
MAX_FAILED_ERRORS = 20
# Who posts the events: `kubectl describe` shows it under From.
REPORTING_CONTROLLER = "filecleanup-operator"
DEFAULT_CONTROLLER = f"{GROUP}/operator"  # the installation that handles objects without spec.managedBy
# The album an object deletes the files of (the client sets it): its receipts are found by it.
ALBUM_LABEL = f"{GROUP}/album"
# When the album service deleted the album (RFC 3339): the erasure deadline counts from it.
ALBUM_DELETED_AT_ANNOTATION = f"{GROUP}/album-deleted-at"


def _valid_key(key: str) -> str:
    problem = key_problem(key)
    if problem is not None:
        raise ValueError(problem)
    return key


Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH), AfterValidator(_valid_key)]
# Index ranges into spec.keys ("0-99,150"): 10,000 keys written as singles fit in this.
IndexRanges = Annotated[str, Field(max_length=100_000, pattern=r"^[0-9,-]*$")]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Backoff(CamelModel):
    initial_seconds: Annotated[int, Field(ge=1, le=3600)] = 5
    max_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300


class Manifest(CamelModel):
    """Where the keys are when they are too many for an object: a storage key whose content is one
    key per line (UTF-8)."""

    key: Key


def _valid_prefix(prefix: str) -> str:
    if not prefix.endswith("/"):
        raise ValueError("a prefix must end in '/'")
    problem = key_problem(prefix + "x")
    if problem is not None:
        raise ValueError(problem)
    return prefix


# Every key under it, when keys would be too many to list (as `aws s3 rm --recursive` deletes).
KeyPrefix = Annotated[str, Field(min_length=2, max_length=MAX_KEY_LENGTH - 1), AfterValidator(_valid_prefix)]


class FileCleanupSpec(CamelModel):
    keys: Annotated[list[Key], Field(min_length=1, max_length=MAX_KEYS, default_factory=list)]
    manifest: Manifest | None = None
    prefix: KeyPrefix | None = None
    managed_by: Annotated[str | None, Field(max_length=63)] = None
    storage: Annotated[str | None, Field(min_length=1, max_length=63)] = None
    chunk_size: Annotated[int, Field(ge=1, le=1000)] = 100
    max_retries: Annotated[int, Field(ge=0, le=100)] = 5
    backoff: Backoff = Backoff()
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, le=31_536_000)] = None
    active_deadline_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = None
    # A grace period: nothing is sent before this time, and deleting the object meanwhile cancels it.
    start_after: AwareDatetime | None = None  # with its offset: a bare time names no instant
    retry_nonce: Annotated[str | None, Field(max_length=64)] = None
    # Like a Job's maxFailedIndexes: more keys than this failed for good, and the object is Failed at
    # once (reason MaxFailedKeysExceeded), the rest unsent.
    max_failed_keys: Annotated[int | None, Field(ge=0, le=MAX_KEYS)] = None
    # Like a Job's: no new calls while true; the calls in flight finish and are checkpointed.
    suspend: bool = False
    # Check the policy and which keys exist, report the counts in status.dryRun, delete nothing.
    dry_run: bool = False

    @model_validator(mode="after")
    def _keys_or_a_manifest(self) -> Self:
        if [bool(self.keys), self.manifest is not None, self.prefix is not None].count(True) != 1:
            raise ValueError("exactly one of keys, manifest and prefix is required")
        if self.dry_run and self.manifest is not None:
            raise ValueError("dryRun is not supported with a manifest")
        return self


class Phase(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    BACKOFF = "Backoff"
    SUSPENDED = "Suspended"
    # Only keys the storage holds (a legal hold, a retention) are left: sent again once it may be over.
    HELD = "Held"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # A dry run that checked every key: nothing was deleted, so it did not succeed at deleting.
    CHECKED = "Checked"

    @property
    def finished(self) -> bool:
        return self in {Phase.SUCCEEDED, Phase.FAILED, Phase.CHECKED}


class ConditionType(StrEnum):
    # As a Job's: Complete and Failed when it is over, Progressing while it is not.
    COMPLETE = "Complete"
    FAILED = "Failed"
    PROGRESSING = "Progressing"
    # kstatus's (Flux, Argo CD, kpt, `kubectl wait --for=condition=Ready`): Ready once Succeeded,
    # Reconciling while at work, Stalled once Failed.
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    # As a Job's: True while suspended (spec.suspend, or the operator-wide pause), False once resumed.
    SUSPENDED = "Suspended"


class Reason(StrEnum):
    """Why a condition is what it is; a Warning event about the same thing carries the same reason."""

    DELETING = "Deleting"
    RETRY_SCHEDULED = "RetryScheduled"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    SUCCEEDED = "Succeeded"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    PERMANENT_ERRORS = "PermanentErrors"
    MAX_FAILED_KEYS_EXCEEDED = "MaxFailedKeysExceeded"
    UNKNOWN_STORAGE = "UnknownStorage"
    INVALID_CHUNK_SIZE = "InvalidChunkSize"
    FORBIDDEN = "Forbidden"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    INTERNAL_ERROR = "InternalError"
    INVALID_SPEC = "InvalidSpec"
    STORAGE_CHANGED = "StorageChanged"
    INVALID_MANIFEST = "InvalidManifest"
    MANIFEST_MISSING = "ManifestMissing"
    MANIFEST_CHANGED = "ManifestChanged"
    SUSPENDED = "Suspended"
    OPERATOR_PAUSED = "OperatorPaused"
    RESUMED = "Resumed"
    DRY_RUN = "DryRun"
    # Progressing, while a run whose status was not trusted starts over from the keys.
    INVALID_STATUS = "InvalidStatus"
    # Pending until spec.startAfter: nothing is sent yet, and the object may still be cancelled.
    GRACE_PERIOD = "GracePeriod"
    # Held: every key left is under a legal hold or a retention of the storage's.
    KEYS_HELD = "KeysHeld"


class EventReason(StrEnum):
    """Reasons that only events carry: things that happened, not states an object is in."""

    COMPLETED = "Completed"
    REDRIVEN = "Redriven"
    EXPIRED = "Expired"
    STATUS_DELAYED = "StatusDelayed"  # status writes waited for the API server; the progress was kept
    REVERIFIED = "Reverified"  # a re-check after Succeeded found none of the keys again
    RESURRECTED = "Resurrected"  # a re-check found deleted keys again: they were deleted again


class Condition(CamelModel):
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = None
    last_transition_time: datetime.datetime
    reason: str
    message: str


class ManifestProgress(CamelModel):
    """Where a manifest's deletion stands (see manifests.py)."""

    checked: bool = False  # read through once: every key valid, the total counted
    round: int = 0  # 0 reads the manifest; n reads the report of round n - 1
    source: int = 0  # the source of the round being read
    sources: int = 1  # how many the round reads: the manifest, or the report's segments
    offset: int = 0  # bytes of the current source done
    done: Annotated[str, Field(max_length=10_000)] = ""  # byte ranges past offset already done
    segments: int = 0  # report segments written in this round
    round_total: int = 0  # keys this round reads
    sent: int = 0  # keys of this round whose outcome is recorded
    failed_now: int = 0  # keys of this round that failed
    permanent_now: int = 0  # keys of this round that failed for good (spec.maxFailedKeys counts them)
    report: str = ""  # where the report of the last round is (its segments), for people
    version: Annotated[str, Field(max_length=1024)] = (
        ""  # the manifest's version as checked (its ETag, or a file's identity)
    )
    size: int = 0  # the manifest's bytes as checked


class FailedKey(CamelModel):
    key: str
    error: str
    attempts: int


class FailedError(CamelModel):
    """The failed keys that share an error, as index ranges into spec.keys: every failed key is in
    one group, so the whole failure report fits in status whatever the number of keys."""

    error: str
    indexes: IndexRanges


class DryRunCounts(CamelModel):
    """What a dry run found, key by distinct key: each is counted once."""

    would_delete: int = 0  # the storage has it: a real run would delete it
    missing: int = 0  # the storage does not have it (a real run would count it deleted)
    forbidden: int = 0  # the storage would refuse it (S3 403, a permission error, a refused path)
    unknown: int = 0  # the storage could not tell (or cannot check: an HTTP storage without dryRunUrl)


class Listing(CamelModel):
    """A deletion by prefix: the keys listed under it, kept in the storage as the run's manifest."""

    key: str  # where the listing is (a manifest: one key per line)
    listed: int = 0  # keys listed, and so to delete
    skipped: int = 0  # keys under the prefix that no FileCleanup key can name, left as they are
    skipped_keys: Annotated[list[str], Field(max_length=10)] = []  # some of them
    sha256: str = ""  # of the listing as kept: what the receipt names, once the listing is gone


class ReceiptPlace(CamelModel):
    """Where a finished object's erasure receipt is."""

    storage: str
    key: str


class Verification(CamelModel):
    """Re-checks after Succeeded: when the next one is due, and what they found (storage ``verify``)."""

    after_seconds: Annotated[list[int], Field(max_length=5)] = []  # the checks' ages, from completionTime
    done: int = 0  # re-checks done
    next_time: datetime.datetime | None = None  # when the next is due; None: all done
    resurrected: int = 0  # keys found again, over every re-check (each deleted again)
    resurrected_keys: Annotated[list[str], Field(max_length=20)] = []  # the latest ones found again
    last: Annotated[str, Field(max_length=1000)] = ""  # what the last re-check found


class FileCleanupStatus(CamelModel):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    storage: str | None = None
    total: int = 0
    deleted: int = 0
    failed: int = 0
    retries: int = 0
    redrives: int = 0
    retry_nonce: str | None = None
    chunk_size: int | None = None
    pending_indexes: IndexRanges = ""
    failed_indexes: IndexRanges = ""
    permanent_indexes: IndexRanges = ""
    failed_errors: Annotated[list[FailedError], Field(max_length=MAX_FAILED_ERRORS)] = []
    failed_keys: Annotated[list[FailedKey], Field(max_length=MAX_LISTED_FAILED_KEYS)] = []
    failed_keys_omitted: int = 0
    internal_errors: int = 0
    manifest: ManifestProgress | None = None
    listing: Listing | None = None  # spec.prefix: what was listed, once it was
    dry_run: DryRunCounts | None = None
    start_time: datetime.datetime | None = None
    completion_time: datetime.datetime | None = None
    # completion_time plus the storage's erasure horizon, once it deleted keys (see with_erasure).
    unrecoverable_after: datetime.datetime | None = None
    receipt: ReceiptPlace | None = None  # the erasure receipt, once the object finished
    verification: Verification | None = None  # re-checks after Succeeded, where the storage has them
    next_retry_time: datetime.datetime | None = None
    conditions: Annotated[list[Condition], Field(max_length=8)] = []

    def condition(self, condition_type: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == condition_type), None)

    @property
    def message(self) -> str:
        """What is happening, in words: the message of the one condition that carries it (Complete,
        Failed, Suspended or Progressing, as the phase is); the others say only their state."""
        return next((c.message for c in self.conditions if c.status == "True" and c.message), "")
