"""The S3 backend's pure parts: request body, reply parsing and outcome classification, on DeleteObjects
replies in the documented format (moto cannot produce per-key errors)."""

from __future__ import annotations

import httpx
import pytest

from filecleanup.config import S3StorageConfig
from filecleanup.storage import StorageUnavailable
from filecleanup.storage.s3 import (
    DeleteObjectsReplyError,
    S3Storage,
    delete_objects_body,
    parse_delete_objects_reply,
)

OPEN_POLICY = {"allowedNamespaces": "*", "keyPrefix": ""}
REPLY_WITH_ERRORS = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>tenants/a/albums/1/ok.jpg</Key></Deleted>
  <Error>
    <Key>tenants/a/albums/1/denied.jpg</Key><Code>AccessDenied</Code><Message>Access Denied</Message>
  </Error>
  <Error>
    <Key>tenants/a/albums/1/busy.jpg</Key><Code>SlowDown</Code>
    <Message>Please reduce your request rate.</Message>
  </Error>
  <Error><Key>tenants/a/albums/1/oops.jpg</Key><Code>InternalError</Code></Error>
</DeleteResult>"""

QUIET_SUCCESS = b"""<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></DeleteResult>"""

SLOW_DOWN = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>1</RequestId>
</Error>"""

MALFORMED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>MalformedXML</Code><Message>The XML you provided was not well-formed</Message></Error>"""


def storage(**settings: object) -> S3Storage:
    config = {"type": "s3", "bucket": "photos", "keyPrefix": "tenants/a/", "policy": OPEN_POLICY, **settings}
    return S3Storage("bucket", S3StorageConfig.model_validate(config))


def test_body_is_quiet_and_escapes_keys() -> None:
    body = delete_objects_body(["a&b<c>.jpg", "plain.jpg"]).decode()
    assert "<Quiet>true</Quiet>" in body
    assert "<Key>a&amp;b&lt;c&gt;.jpg</Key>" in body
    assert body.count("<Object>") == 2


def test_per_key_errors_are_parsed_with_their_codes() -> None:
    assert parse_delete_objects_reply(REPLY_WITH_ERRORS) == {
        "tenants/a/albums/1/denied.jpg": "AccessDenied: Access Denied",
        "tenants/a/albums/1/busy.jpg": "SlowDown: Please reduce your request rate.",
        "tenants/a/albums/1/oops.jpg": "InternalError",
    }


@pytest.mark.parametrize(
    "body", [b"not xml", SLOW_DOWN, b"<DeleteResult><Error><Code>X</Code></Error></DeleteResult>"]
)
def test_replies_that_are_not_delete_results_are_refused(body: bytes) -> None:
    with pytest.raises(DeleteObjectsReplyError):
        parse_delete_objects_reply(
            body.replace(b"<DeleteResult>", b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">')
        )


def test_200_with_errors_fails_only_those_keys_and_strips_the_prefix() -> None:
    keys = [
        "albums/1/ok.jpg",
        "albums/1/denied.jpg",
        "albums/1/busy.jpg",
        "albums/1/oops.jpg",
        "albums/1/quiet.jpg",
    ]
    result = storage()._result(keys, httpx.Response(200, content=REPLY_WITH_ERRORS))
    assert result.deleted == {"albums/1/ok.jpg", "albums/1/quiet.jpg"}
    assert result.failed == {
        "albums/1/denied.jpg": "AccessDenied: Access Denied",
        "albums/1/busy.jpg": "SlowDown: Please reduce your request rate.",
        "albums/1/oops.jpg": "InternalError",
    }
    assert not result.whole_call_failed


def test_quiet_success_confirms_every_key() -> None:
    result = storage()._result(["a", "b"], httpx.Response(200, content=QUIET_SUCCESS))
    assert result.deleted == {"a", "b"}


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [(503, SLOW_DOWN, {"Retry-After": "4"}), (500, b"", {}), (502, b"", {}), (403, b"", {}), (401, b"", {})],
)
def test_whole_call_overload_server_errors_and_credentials_mean_unavailable(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    with pytest.raises(StorageUnavailable) as raised:
        storage()._result(["a"], httpx.Response(status, content=body, headers=headers))
    assert raised.value.retry_after == (4 if headers else None)


def test_other_client_errors_fail_the_chunk() -> None:
    result = storage()._result(["a", "b"], httpx.Response(400, content=MALFORMED))
    assert result.whole_call_failed
    assert result.failed == {
        "a": "storage answered HTTP 400 MalformedXML",
        "b": "storage answered HTTP 400 MalformedXML",
    }


def test_a_200_that_breaks_the_contract_fails_the_chunk() -> None:
    result = storage()._result(["a"], httpx.Response(200, content=b"<html>proxy error</html>"))
    assert result.whole_call_failed
    assert "breaks the contract" in result.failed["a"]


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://photos.s3.us-east-1.amazonaws.com/?delete"),
        ({"region": "eu-west-1"}, "https://photos.s3.eu-west-1.amazonaws.com/?delete"),
        ({"endpoint": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000/photos?delete"),
        (
            {"endpoint": "https://minio.example", "addressingStyle": "virtual"},
            "https://photos.minio.example/?delete",
        ),
        ({"addressingStyle": "path"}, "https://s3.us-east-1.amazonaws.com/photos?delete"),
    ],
)
def test_addressing_styles(settings: dict[str, str], url: str) -> None:
    assert storage(**settings)._url == url
