"""The HTTP backend's reading of any reply, and its bearer token file: whatever the storage sends,
the result is classified, and no key is confirmed that was not requested and listed as deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api import redaction
from filecleanup.storage import StorageUnavailable
from filecleanup.storage.base import NOT_CONFIRMED, ChunkResult, ExistsResult, chunk_outcome
from filecleanup.storage.errors import CallFailed
from filecleanup.storage.http import TokenFile, interpret, interpret_exists
from filecleanup.storage.transport import Reply, parse_retry_after, reply_limit


def reply(status: int, body: bytes | str = b"", **headers: str) -> Reply:
    raw = {name.replace("_", "-").encode(): value.encode() for name, value in headers.items()}
    return Reply(status, httpx.Headers(raw), body.encode() if isinstance(body, str) else body)


def chunk(keys: Sequence[str], answer: Reply) -> ChunkResult:
    """What the backend makes of a reply about ``keys``: the reply read, and a failed call made the
    chunk's failure by the one conversion (base.chunk_outcome)."""

    async def read() -> ChunkResult:
        return interpret("photos", keys, answer)

    return asyncio.run(chunk_outcome(keys, read()))


def test_only_requested_keys_listed_as_deleted_count() -> None:
    body = json.dumps(
        {"deleted": ["a", "b", "not-asked-for"], "errors": [{"key": "c", "message": "locked"}, {"key": "x"}]}
    )
    result = interpret("photos", ["a", "b", "c", "d"], reply(200, body))
    assert result.deleted == {"a", "b"}
    assert result.failed == {"c": "locked", "d": NOT_CONFIRMED}


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", '{"removed": ["a"]}', '{"deleted": "a"}', ""])
def test_a_reply_that_breaks_the_contract_fails_the_chunk_without_quoting_it(body: str) -> None:
    result = chunk(["a"], reply(200, body))
    assert result.whole_call_failed
    assert result.failed["a"].startswith("the reply breaks the contract: ")
    assert "html" not in result.failed["a"]  # the storage's bytes are not repeated into status


@pytest.mark.parametrize(("status", "retry_after"), [(503, 7.0), (429, 7.0)])
def test_overload_is_unavailable_with_retry_after(status: int, retry_after: float) -> None:
    with pytest.raises(StorageUnavailable) as raised:
        interpret("photos", ["a"], reply(status, Retry_After="7"))
    assert raised.value.retry_after == retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("12", 12.0),
        ("soon", None),
        ("\u00b2", None),  # str.isdigit() says yes; float() says no; HTTP says no
        ("99999999999999999999", None),
        ("Thu, 26 Nov 2026 12:00:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 12:00:30 -0000", 30.0),
        ("Thu, 26 Nov 9999 12:00:30 GMT", 251603539230.0),  # absurd, but a wait (the back-off caps it)
        ("Mon, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_retry_after_header_forms(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=1795694400.0) == expected  # 2026-11-26 12:00:00 UTC


@given(st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    seconds = parse_retry_after(value, now=1795694400.0)
    assert seconds is None or seconds >= 0


def json_like(*fields: str) -> st.SearchStrategy[bytes]:
    """JSON documents made of the contract's field names, nested at random: near misses of a reply."""
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(fields), children, max_size=4)
        ),
        max_leaves=12,
    )
    return values.map(lambda value: json.dumps(value).encode())


@given(
    keys=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=5, unique=True),
    status=st.integers(100, 599),
    body=st.one_of(st.binary(max_size=200), json_like("deleted", "errors", "key", "message")),
)
def test_any_reply_gives_a_classified_result(keys: list[str], status: int, body: bytes) -> None:
    if status >= 500 or status in {401, 403, 429}:  # read as every S3 call is
        with pytest.raises(StorageUnavailable):
            chunk(keys, reply(status, body))
        return
    result = chunk(keys, reply(status, body))
    if result.whole_call_failed:  # classified: a fixed message, never the reply's bytes
        assert all(
            error.startswith(("storage answered HTTP ", "the reply breaks the contract: "))
            for error in result.failed.values()
        )
    assert result.deleted <= set(keys)
    assert set(result.deleted) | set(result.failed) == set(keys)


@given(
    keys=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=5, unique=True),
    status=st.integers(100, 599),
    body=st.one_of(st.binary(max_size=200), json_like("existing", "missing", "forbidden", "key")),
)
def test_any_dry_run_reply_gives_a_classified_result(keys: list[str], status: int, body: bytes) -> None:
    try:
        result = interpret_exists("photos", keys, reply(status, body))
    except StorageUnavailable:
        assert status >= 500 or status in {401, 403, 429}  # read as for a delete
        return
    except CallFailed:  # the backend leaves every key unknown
        result = ExistsResult.unknown()
    told = result.existing | result.missing | result.forbidden
    assert told <= set(keys)  # nothing about a key that was not asked
    assert not (result.existing & result.missing)


def test_the_reply_limit_grows_with_the_chunk() -> None:
    assert reply_limit(["a"]) < reply_limit(["a", "b"]) < reply_limit(["a" * 1000, "b"])
    assert reply_limit(["k" * 100] * 1000) < 2_000_000  # a full chunk of ordinary keys: under 2 MB


def test_a_token_that_could_break_the_header_is_refused_and_never_quoted(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("S3cr3t-token\nx-injected: 1\n")
    with pytest.raises(StorageUnavailable) as raised:
        TokenFile("photos", token_file).header()
    assert "does not hold a bearer token" in str(raised.value)
    assert "S3cr3t" not in str(raised.value)
    assert "S3cr3t-token\nx-injected: 1" not in redaction.redact("S3cr3t-token\nx-injected: 1")


def test_a_token_file_that_cannot_be_read_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable, match=r"cannot read token file .*ENOENT"):
        TokenFile("photos", tmp_path / "missing").header()
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    with pytest.raises(StorageUnavailable, match="not UTF-8"):
        TokenFile("photos", tmp_path / "binary").header()


def test_a_valid_token_is_sent_and_redacted_from_text(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc.DEF-123_~+/==\n")
    assert TokenFile("photos", token_file).header() == {"Authorization": "Bearer abc.DEF-123_~+/=="}
    assert redaction.redact("echoed: abc.DEF-123_~+/==!") == "echoed: [redacted]!"
