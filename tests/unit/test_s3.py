"""The S3 backend's pure parts: the request body, the reading of any reply, and what it means for each
key, on replies in the documented format (moto cannot produce per-key errors) and on any bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.api.config import S3StorageConfig
from filecleanup.storage import StorageUnavailable
from filecleanup.storage.base import NOT_CONFIRMED, ChunkResult, chunk_outcome
from filecleanup.storage.errors import S3ReplyError
from filecleanup.storage.s3 import DELETE_MARKER_ONLY, S3Storage, Target, outcome, read_delete_reply
from filecleanup.storage.s3_xml import DeleteResult, delete_objects_body, parse_delete_result, parse_versions
from filecleanup.storage.transport import Reply

OPEN_POLICY = {"allowedNamespaces": "*", "keyPrefix": ""}
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
REPLY = f"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult {NS}>
  <Deleted><Key>tenants/a/albums/1/ok.jpg</Key></Deleted>
  <Deleted><Key>tenants/a/albums/1/hidden.jpg</Key><DeleteMarker>true</DeleteMarker>
    <DeleteMarkerVersionId>m1</DeleteMarkerVersionId></Deleted>
  <Error>
    <Key>tenants/a/albums/1/denied.jpg</Key><Code>AccessDenied</Code><Message>Access Denied</Message>
  </Error>
  <Error>
    <Key>tenants/a/albums/1/busy.jpg</Key><Code>SlowDown</Code>
    <Message>Please reduce your request rate.</Message>
  </Error>
  <Error><Key>tenants/a/albums/1/other-key.jpg</Key><Code>InternalError</Code></Error>
</DeleteResult>""".encode()

SLOW_DOWN = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>1</RequestId>
</Error>"""

MALFORMED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>MalformedXML</Code><Message>The XML you provided was not well-formed</Message></Error>"""


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    """A reply as the transport hands it over: header values are bytes off the wire."""
    raw = {name.encode(): value.encode() for name, value in (headers or {}).items()}
    return Reply(status, httpx.Headers(raw), body)


def targets(*keys: str, prefix: str = "tenants/a/albums/1/") -> list[Target]:
    return [Target(key, prefix + key, [None]) for key in keys]


def chunk(keys: Sequence[str], answer: Reply, prefix: str = "tenants/a/albums/1/") -> ChunkResult:
    """What the backend makes of a DeleteObjects reply about ``keys``: the reply read, and a failed
    call made the chunk's failure by the one conversion (base.chunk_outcome)."""

    async def read() -> ChunkResult:
        return outcome(targets(*keys, prefix=prefix), read_delete_reply("bucket", answer))

    return asyncio.run(chunk_outcome(keys, read()))


def test_the_body_is_verbose_names_versions_and_escapes_keys() -> None:
    body = delete_objects_body([("a&b<c>.jpg", None), ("plain.jpg", "v-1")]).decode()
    assert "<Quiet>false</Quiet>" in body  # every deleted key must be confirmed by name
    assert "<Object><Key>a&amp;b&lt;c&gt;.jpg</Key></Object>" in body
    assert "<Object><Key>plain.jpg</Key><VersionId>v-1</VersionId></Object>" in body


def test_a_key_counts_as_deleted_only_when_the_reply_names_it() -> None:
    keys = ["ok.jpg", "hidden.jpg", "denied.jpg", "busy.jpg", "silent.jpg"]
    result = outcome(targets(*keys), parse_delete_result(REPLY))
    assert result.deleted == {"ok.jpg"}
    assert result.failed == {
        "hidden.jpg": DELETE_MARKER_ONLY,  # a versioned bucket kept the data
        "denied.jpg": "AccessDenied: Access Denied",
        "busy.jpg": "SlowDown: Please reduce your request rate.",
        # Quiet mode would have counted this key as deleted: the reply says nothing of it, and its one
        # error names another key.
        "silent.jpg": NOT_CONFIRMED,
    }
    assert not result.whole_call_failed


def test_every_version_must_be_confirmed() -> None:
    result = DeleteResult(
        deleted={("k1", "v1"): False, ("k1", "v2"): True, ("k2", "v1"): False},
        errors={("k2", "v2"): "AccessDenied"},
    )
    sent = [Target("k1", "k1", ["v1", "v2"]), Target("k2", "k2", ["v1", "v2"]), Target("k3", "k3", [])]
    confirmed = outcome(sent, result)
    assert confirmed.deleted == {
        "k1",
        "k3",
    }  # k1: both versions (a marker's deletion is a deletion); k3: none left
    assert confirmed.failed == {"k2": "AccessDenied"}


def test_a_delete_marker_deleted_by_version_is_confirmed_by_its_marker_version_id() -> None:
    """SeaweedFS names a delete marker it deleted by version ID as DeleteMarkerVersionId alone, without
    VersionId (recorded from weed 4.53); AWS names both. Either confirms the marker's deletion; an
    unversioned delete's new marker confirms nothing."""
    reply = (
        f"<DeleteResult {NS}><Deleted><Key>k1</Key><VersionId>v1</VersionId></Deleted>"
        "<Deleted><Key>k1</Key><DeleteMarker>true</DeleteMarker>"
        "<DeleteMarkerVersionId>m1</DeleteMarkerVersionId></Deleted>"
        "<Deleted><Key>k2</Key><DeleteMarker>true</DeleteMarker>"
        "<DeleteMarkerVersionId>m9</DeleteMarkerVersionId></Deleted></DeleteResult>"
    ).encode()
    result = parse_delete_result(reply)
    confirmed = outcome([Target("k1", "k1", ["v1", "m1"]), Target("k2", "k2", [None])], result)
    assert confirmed.deleted == {"k1"}
    assert confirmed.failed == {"k2": DELETE_MARKER_ONLY}


def test_listing_versions_reads_only_the_exact_key_and_follows_pages() -> None:
    page = f"""<ListVersionsResult {NS}><IsTruncated>true</IsTruncated>
      <NextKeyMarker>a.jpg</NextKeyMarker><NextVersionIdMarker>v2</NextVersionIdMarker>
      <Version><Key>a.jpg</Key><VersionId>v1</VersionId></Version>
      <Version><Key>a.jpg.bak</Key><VersionId>x</VersionId></Version>
      <DeleteMarker><Key>a.jpg</Key><VersionId>m1</VersionId></DeleteMarker>
    </ListVersionsResult>""".encode()
    assert parse_versions(page, "a.jpg") == (["v1", "m1"], "a.jpg", "v2")
    last = f"<ListVersionsResult {NS}><IsTruncated>false</IsTruncated></ListVersionsResult>".encode()
    assert parse_versions(last, "a.jpg") == ([], None, None)


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        SLOW_DOWN,
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><DeleteResult>&a;</DeleteResult>',
        b'<?xml version="1.0" encoding="klingon"?><DeleteResult/>',
    ],
)
def test_replies_that_are_not_delete_results_are_refused(body: bytes) -> None:
    with pytest.raises(S3ReplyError):
        parse_delete_result(body)


@pytest.mark.parametrize(
    ("status", "body", "headers", "retry_after"),
    [
        (503, SLOW_DOWN, {"Retry-After": "4"}, 4.0),
        (500, b"", {}, None),
        (502, b"", {}, None),
        (403, b"", {}, None),
        (401, b"", {}, None),
        (503, b"", {"Retry-After": "\u00b2"}, None),  # a digit to str.isdigit(), not to HTTP
    ],
)
def test_whole_call_overload_server_errors_and_credentials_mean_unavailable(
    status: int, body: bytes, headers: dict[str, str], retry_after: float | None
) -> None:
    with pytest.raises(StorageUnavailable) as raised:
        read_delete_reply("bucket", reply(status, body, headers))
    assert raised.value.retry_after == retry_after


def test_other_client_errors_fail_the_chunk() -> None:
    result = chunk(["a", "b"], reply(400, MALFORMED))
    assert result.whole_call_failed
    assert result.failed == {
        "a": "storage answered HTTP 400 MalformedXML",
        "b": "storage answered HTTP 400 MalformedXML",
    }


def test_a_200_that_breaks_the_contract_fails_the_chunk() -> None:
    result = chunk(["a"], reply(200, b"<html>proxy error</html>"))
    assert result.whole_call_failed
    assert result.failed["a"] == "the reply breaks the contract: expected DeleteResult, got html"


KEYS = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5, unique=True)


def xml_fragments() -> st.SearchStrategy[bytes]:
    """Bytes that look like S3 replies in part: tags of the real format, around any text."""
    tag = st.sampled_from(
        ["DeleteResult", "Deleted", "Error", "Key", "Code", "Message", "VersionId", "DeleteMarker", "x"]
    )
    element = st.builds(lambda name, text: f"<{name} {NS}>{text}</{name}>", tag, st.text(max_size=30))
    return st.one_of(
        st.binary(max_size=300), st.lists(element, max_size=6).map(lambda parts: "".join(parts).encode())
    )


@given(keys=KEYS, status=st.integers(100, 599), body=xml_fragments(), retry_after=st.text(max_size=20))
def test_any_reply_gives_a_classified_result_and_confirms_only_requested_keys(
    keys: list[str], status: int, body: bytes, retry_after: str
) -> None:
    headers = {"Retry-After": retry_after.strip() or "1"}
    if status >= 500 or status in {401, 403, 429}:  # 429 and 503 as StorageThrottled, a kind of it
        with pytest.raises(StorageUnavailable) as raised:
            read_delete_reply("bucket", reply(status, body, headers))
        assert raised.value.retry_after is None or raised.value.retry_after >= 0
        return
    result = chunk(keys, reply(status, body, headers), prefix="p/")
    if result.whole_call_failed:  # classified: a fixed message, never the reply's bytes
        assert all(
            error.startswith(("storage answered HTTP ", "the reply breaks the contract: "))
            for error in result.failed.values()
        )
    assert result.deleted <= set(keys)
    assert set(result.deleted) | set(result.failed) == set(keys)
    assert not set(result.deleted) & set(result.failed)
    assert result.permanent <= set(result.failed)


@given(keys=KEYS, deleted=st.lists(st.text(max_size=20), max_size=5))
def test_a_reply_naming_other_keys_confirms_none_of_ours(keys: list[str], deleted: list[str]) -> None:
    others = [key for key in deleted if key not in keys]
    body = f"<DeleteResult {NS}>" + "".join(f"<Deleted><Key>p/{key}</Key></Deleted>" for key in others)
    result = chunk(keys, reply(200, (body + "</DeleteResult>").encode()), prefix="p/")
    assert not result.deleted


def storage(**settings: object) -> S3Storage:
    config = {"type": "s3", "bucket": "photos", "keyPrefix": "tenants/a/", "policy": OPEN_POLICY, **settings}
    return S3Storage("bucket", S3StorageConfig.model_validate(config))


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://photos.s3.us-east-1.amazonaws.com"),
        ({"region": "eu-west-1"}, "https://photos.s3.eu-west-1.amazonaws.com"),
        ({"endpoint": "http://127.0.0.1:9000", "allowPlainHttp": True}, "http://127.0.0.1:9000/photos"),
        (
            {"endpoint": "https://minio.example", "addressingStyle": "virtual"},
            "https://photos.minio.example",
        ),
        ({"addressingStyle": "path"}, "https://s3.us-east-1.amazonaws.com/photos"),
    ],
)
def test_addressing_styles(settings: dict[str, object], url: str) -> None:
    assert storage(**settings)._base == url


def test_a_plain_http_endpoint_needs_an_explicit_yes() -> None:
    with pytest.raises(ValueError, match="cleartext"):
        storage(endpoint="http://minio.storage.svc:9000")


async def test_a_dry_run_check_is_a_signed_head_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    statuses = {"here.jpg": 200, "gone.jpg": 404, "denied.jpg": 403, "odd.jpg": 400, "busy.jpg": 503}
    seen: list[tuple[str, str, bool]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        key = request.url.path.rsplit("/", 1)[1]
        seen.append(
            (request.method, request.url.path, "AWS4-HMAC-SHA256" in request.headers["Authorization"])
        )
        return httpx.Response(statuses[key], stream=httpx.ByteStream(b""))

    config = {
        "type": "s3",
        "bucket": "photos",
        "keyPrefix": "tenants/a/",
        "endpoint": "http://s3.test",
        "allowPlainHttp": True,
        "policy": OPEN_POLICY,
    }
    s3 = S3Storage("bucket", S3StorageConfig.model_validate(config), transport=httpx.MockTransport(answer))
    result = await s3.exists(["here.jpg", "gone.jpg", "denied.jpg", "odd.jpg"])
    assert result.existing == frozenset({"here.jpg"})
    assert result.missing == frozenset({"gone.jpg"})
    assert result.forbidden == frozenset({"denied.jpg"})  # and odd.jpg (400) is unknown
    assert seen[0] == ("HEAD", "/photos/tenants/a/here.jpg", True)
    with pytest.raises(StorageUnavailable):  # throttled (StorageThrottled): sent again by the limiter
        await s3.exists(["busy.jpg"])
    await s3.aclose()


class FailingRefresh:
    """Credentials whose refresh fails, as an expired STS session or an unreachable IMDS would."""

    def get_frozen_credentials(self) -> None:
        raise RuntimeError("refresh failed for key AKIASECRETVALUE")  # botocore raises many kinds


@pytest.mark.parametrize(("source", "reason"), [(FailingRefresh, "RuntimeError"), (lambda: None, "no AWS")])
async def test_credentials_that_cannot_be_had_mean_unavailable_and_nothing_is_sent(
    source: object, reason: str
) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    config = {"type": "s3", "bucket": "photos", "endpoint": "https://s3.test", "policy": OPEN_POLICY}
    s3 = S3Storage("bucket", S3StorageConfig.model_validate(config), transport=httpx.MockTransport(answer))
    s3._credentials_source = source  # type: ignore[assignment]  # the credential chain's seam
    with pytest.raises(StorageUnavailable, match=reason) as raised:
        await s3.delete(["a.jpg"])
    assert "AKIASECRETVALUE" not in str(raised.value)  # the kind only, never the text
    assert sent == []
    await s3.aclose()


VERSION_KEYS = st.sampled_from(["a.jpg", "a.jpg ", "A.jpg", "a.jpg/x", ""])
ENTRY = st.tuples(
    st.sampled_from(["Version", "DeleteMarker", "Other"]), VERSION_KEYS, st.text("v0123", max_size=3)
)


@given(
    entries=st.lists(ENTRY, max_size=6),
    truncated=st.sampled_from(["true", "false", " true ", ""]),
    next_key=st.none() | VERSION_KEYS,
)
def test_a_listing_yields_only_the_versions_of_exactly_the_key(
    entries: list[tuple[str, str, str]], truncated: str, next_key: str | None
) -> None:
    body = "".join(
        f"<{tag}><Key>{key}</Key><VersionId>{version}</VersionId></{tag}>" for tag, key, version in entries
    )
    marker = "" if next_key is None else f"<NextKeyMarker>{next_key}</NextKeyMarker>"
    page = (
        f"<ListVersionsResult {NS}><IsTruncated>{truncated}</IsTruncated>{marker}{body}</ListVersionsResult>"
    )
    try:
        versions, following, _ = parse_versions(page.encode(), "a.jpg")
    except S3ReplyError:
        assert truncated.strip() == "true" and next_key is None
        return
    expected = [v for tag in ("Version", "DeleteMarker") for t, k, v in entries if t == tag and k == "a.jpg"]
    assert versions == expected
    assert (following is None) == (truncated.strip() != "true")


@given(st.binary(max_size=300))
def test_any_listing_bytes_give_versions_or_a_classified_error(body: bytes) -> None:
    try:
        versions, following, _ = parse_versions(body, "a.jpg")
    except S3ReplyError:
        return
    assert all(isinstance(version, str) for version in versions)
    assert following is None or isinstance(following, str)
