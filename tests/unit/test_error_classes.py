"""Retry policy per error class: the backends' classification, what a round does with a key failed for
good, maxFailedKeys, the whole failure report in status (failedErrors) with its size, and the one tree
of storage errors."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.config import HttpStorageConfig
from filecleanup.api.models import MAX_FAILED_ERRORS, MAX_KEYS, FileCleanupStatus, Phase, Reason
from filecleanup.decide.failed_errors import OTHER_ERRORS, expand, group_by_error
from filecleanup.decide.outcomes import Outcome
from filecleanup.decide.progress import Progress
from filecleanup.storage import base
from filecleanup.storage.base import ChunkResult, chunk_outcome
from filecleanup.storage.errors import (
    HTTP_PERMANENT,
    S3_PERMANENT,
    CallFailed,
    CallRefused,
    ErrorClasses,
    NotSent,
    ObjectChanged,
    ObjectError,
    ObjectMissing,
    ObjectRefused,
    OutcomeUnknown,
    ReplyBroken,
    StorageError,
    StorageThrottled,
    StorageUnavailable,
)
from filecleanup.storage.http import interpret
from filecleanup.storage.s3 import Target, outcome
from filecleanup.storage.s3_xml import parse_delete_result
from filecleanup.storage.transport import Reply
from tests.unit.decisions import conclude, keys, spec, status_after

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


class TestClassification:
    def test_unknown_and_missing_codes_are_transient(self) -> None:
        classes = ErrorClasses(S3_PERMANENT)
        assert classes.is_permanent("AccessDenied")
        assert not classes.is_permanent("SlowDown")
        assert not classes.is_permanent("SomethingNew")
        assert not classes.is_permanent(None)

    def test_the_configuration_overrides_the_defaults_code_by_code(self) -> None:
        classes = ErrorClasses.configured(S3_PERMANENT, ["QuotaExceeded"], ["AccessDenied"])
        assert classes.is_permanent("QuotaExceeded")
        assert not classes.is_permanent("AccessDenied")
        assert classes.is_permanent("InvalidObjectName")

    def test_s3_per_key_errors_carry_their_class(self) -> None:
        body = (
            f"<DeleteResult {NS}><Deleted><Key>a</Key></Deleted>"
            "<Error><Key>b</Key><Code>AccessDenied</Code><Message>no</Message></Error>"
            "<Error><Key>c</Key><Code>InternalError</Code></Error></DeleteResult>"
        ).encode()
        targets = [Target(key, key, [None]) for key in "abc"]
        result = outcome(targets, parse_delete_result(body))
        assert result.deleted == {"a"}
        assert result.failed == {"b": "AccessDenied: no", "c": "InternalError"}
        assert result.permanent == {"b"}

    def test_the_http_contract_classifies_by_its_optional_code(self) -> None:
        body = {
            "deleted": ["a"],
            "errors": [
                {"key": "b", "message": "not yours", "code": "AccessDenied"},
                {"key": "c", "message": "busy", "code": "Busy"},
                {"key": "d", "message": "no code"},
            ],
        }
        config = HttpStorageConfig.model_validate(
            {
                "type": "http",
                "url": "http://storage/delete",
                "policy": {"allowedNamespaces": "*", "keyPrefix": ""},
                "permanentErrors": ["Busy"],
            }
        )
        classes = ErrorClasses.configured(HTTP_PERMANENT, config.permanent_errors, config.transient_errors)
        reply = Reply(200, httpx.Headers(), json.dumps(body).encode())
        result = interpret("photos", ["a", "b", "c", "d"], reply, classes)
        assert result.failed["b"] == "AccessDenied: not yours"
        assert result.failed["d"] == "no code"
        assert result.permanent == {"b", "c"}
        assert interpret("photos", ["a", "b", "c", "d"], reply).permanent == {"b"}  # the defaults

    @given(
        st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=20, unique=True),
        st.sets(st.text(max_size=5)),
    )
    def test_only_failed_keys_can_be_permanent(self, requested: list[str], permanent: set[str]) -> None:
        result = ChunkResult.from_reply(requested, requested[:1], {}, permanent | set(requested))
        assert result.permanent == set(requested[1:])


def permanent_answer(progress: Progress, denied: set[str]) -> None:
    for chunk in progress.chunks():
        requested = progress.chunk_keys(chunk)
        confirmed = [key for key in requested if key not in denied]
        errors = dict.fromkeys(denied, "AccessDenied")
        progress.record(chunk, ChunkResult.from_reply(requested, confirmed, errors, denied))


class TestPermanentFailures:
    def test_a_key_failed_for_good_is_not_retried_and_the_object_fails(self) -> None:
        the_spec = spec(keys(10), chunkSize=5, maxRetries=3)
        progress = Progress.start(the_spec)
        denied = {"albums/1/2.jpg"}
        permanent_answer(progress, denied)
        result = conclude(the_spec, progress)
        assert (result.phase, result.reason) == (Phase.FAILED, Reason.PERMANENT_ERRORS)
        assert progress.failed_count == 1
        status = status_after(progress, result)
        assert (status.failed, status.permanent_indexes, status.failed_indexes) == (1, "2", "")

    def test_transient_keys_are_retried_while_the_permanent_one_waits_in_status(self) -> None:
        the_spec = spec(keys(10), chunkSize=5, maxRetries=3)
        progress = Progress.start(the_spec)
        for chunk in progress.chunks():
            requested = progress.chunk_keys(chunk)
            errors = {"albums/1/2.jpg": "AccessDenied", "albums/1/7.jpg": "InternalError"}
            confirmed = [key for key in requested if key not in errors]
            progress.record(chunk, ChunkResult.from_reply(requested, confirmed, errors, ["albums/1/2.jpg"]))
        assert conclude(the_spec, progress).phase == Phase.BACKOFF
        assert list(progress.pending) == [7]
        status = status_after(progress, Outcome(Phase.BACKOFF, Reason.RETRY_SCHEDULED, "retry"))
        resumed = Progress.resume(the_spec, status)
        assert (list(resumed.pending), resumed.permanent) == ([7], {2: ("AccessDenied", 1)})
        redriven = Progress.redrive(the_spec, status.model_copy(update={"phase": Phase.FAILED}))
        assert list(redriven.pending) == [2, 7]  # a redrive sends the permanent ones again

    def test_max_failed_keys_counts_keys_failed_for_good(self) -> None:
        progress = Progress.start(spec(keys(10), chunkSize=5))
        permanent_answer(progress, {"albums/1/1.jpg", "albums/1/2.jpg"})
        assert not progress.too_many_failed(None)
        assert not progress.too_many_failed(2)
        assert progress.too_many_failed(1)

    def test_a_status_with_overlapping_permanent_indexes_is_not_trusted(self) -> None:
        the_spec = spec(keys(3))
        status = FileCleanupStatus(
            phase=Phase.IN_PROGRESS, total=3, deleted=1, pending_indexes="1", permanent_indexes="1-2"
        )
        with pytest.raises(ValueError, match="distinct keys"):
            Progress.resume(the_spec, status)


class TestFailedErrors:
    def test_groups_expand_back_to_every_failed_key(self) -> None:
        names = keys(6)
        groups = group_by_error([(0, "x"), (2, "y"), (3, "x"), (5, "x")])
        assert [(group.error, group.indexes) for group in groups] == [("x", "0,3,5"), ("y", "2")]
        assert expand(groups, names) == [
            (names[0], "x"),
            (names[2], "y"),
            (names[3], "x"),
            (names[5], "x"),
        ]

    def test_past_the_cap_the_least_common_errors_share_a_group(self) -> None:
        failures = [(i, f"error {i % 30}") for i in range(300)]
        groups = group_by_error(failures)
        assert len(groups) == MAX_FAILED_ERRORS
        assert groups[-1].error == OTHER_ERRORS
        assert len(expand(groups, keys(300))) == 300

    @given(st.lists(st.tuples(st.integers(0, 99), st.sampled_from("abcde")), unique_by=lambda p: p[0]))
    def test_expanding_the_groups_gives_the_failures_back(self, failures: list[tuple[int, str]]) -> None:
        assert expand(group_by_error(failures), keys(100)) == [
            (keys(100)[i], error) for i, error in sorted(failures)
        ]


STATUS_BOUND = 256 * 1024  # well below etcd's 1.5 MiB per object, leaving room for the keys
LONG_KEY = 150  # the longest keys that let 10,000 of them fit in an object (docs/benchmarks.md)


@pytest.mark.parametrize(
    ("case", "error_of"),
    [
        ("3 errors in runs", lambda i: f"error {i * 3 // MAX_KEYS}"),
        ("20 errors interleaved key by key", lambda i: f"error {i % 20}: " + "x" * 200),
        ("every key its own error", lambda i: f"error {i}: " + "x" * 200),
    ],
)
def test_status_of_10000_failed_keys_stays_small(case: str, error_of: object) -> None:
    assert callable(error_of)
    names = [f"{i:05d}/".ljust(LONG_KEY, "k") for i in range(MAX_KEYS)]
    the_spec = spec(names, chunkSize=1000, maxRetries=0)
    progress = Progress.start(the_spec)
    for chunk in progress.chunks():
        requested = progress.chunk_keys(chunk)
        errors = {key: error_of(int(key[:5])) for key in requested}
        progress.record(chunk, ChunkResult.from_reply(requested, [], errors, requested[::2]))
    status = status_after(progress, conclude(the_spec, progress))
    size = len(json.dumps(status.model_dump(mode="json", by_alias=True)))
    print(f"\nstatus of {MAX_KEYS} failed keys, {case}: {size} bytes")  # noqa: T201  (docs/benchmarks.md's figures)
    assert status.failed == MAX_KEYS
    assert len(expand(status.failed_errors, names)) == MAX_KEYS
    assert size < STATUS_BOUND


class TestOneTree:
    """storage/errors.py: every error a storage reports is in one tree, and a failed call becomes the
    chunk's failed keys in one place (base.chunk_outcome)."""

    def test_the_tree(self) -> None:
        assert issubclass(StorageThrottled, StorageUnavailable)
        for failed in (OutcomeUnknown, CallRefused, ReplyBroken):
            assert issubclass(failed, CallFailed)
            assert not issubclass(failed, StorageUnavailable)  # a failed call is no outage
        for about_an_object in (ObjectMissing, ObjectRefused, ObjectChanged):
            assert issubclass(about_an_object, ObjectError)
        for branch in (StorageUnavailable, CallFailed, ObjectError, NotSent):
            assert issubclass(branch, StorageError)
        # Where callers have always found them.
        assert base.StorageUnavailable is StorageUnavailable
        assert base.NotSent is NotSent
        assert base.ObjectRefused is ObjectRefused

    @pytest.mark.parametrize(
        "failure",
        [
            OutcomeUnknown("no reply within 1 s: outcome unknown"),
            CallRefused("storage answered HTTP 400"),
            ReplyBroken("the reply breaks the contract: not XML"),
        ],
    )
    async def test_a_failed_call_fails_every_key_of_its_chunk(self, failure: CallFailed) -> None:
        async def call() -> ChunkResult:
            raise failure

        result = await chunk_outcome(["a", "b"], call())
        assert result.whole_call_failed
        assert not result.deleted
        assert result.failed == {"a": str(failure), "b": str(failure)}
        assert not result.permanent  # retried within the keys' budget

    async def test_an_outage_is_no_keys_failure(self) -> None:
        async def call() -> ChunkResult:
            raise StorageUnavailable("storage photos answered 500")

        with pytest.raises(StorageUnavailable):
            await chunk_outcome(["a"], call())

    async def test_an_answer_passes_through(self) -> None:
        answered = ChunkResult.from_reply(["a", "b"], ["a"], {"b": "locked"})

        async def call() -> ChunkResult:
            return answered

        assert await chunk_outcome(["a", "b"], call()) is answered
