"""Layer storage. The XML of S3's DeleteObjects and ListObjectVersions: the request body, and the replies
read whatever their bytes (a reply that is not the expected XML is an :class:`S3ReplyError`, never a
crash; the S3 backend reports it as :class:`~filecleanup.storage.errors.ReplyBroken`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from filecleanup.storage.errors import S3ReplyError

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class DeleteResult:
    """A DeleteObjects reply: per (key, version) deleted, and per (key, version) errors."""

    deleted: Mapping[tuple[str, str | None], bool] = field(default_factory=dict)  # -> only a marker added
    errors: Mapping[tuple[str, str | None], str] = field(default_factory=dict)  # -> "Code: Message"
    codes: Mapping[tuple[str, str | None], str] = field(default_factory=dict)  # -> "Code"
    # Delete markers deleted by version ID where the reply names them only as DeleteMarkerVersionId, with
    # no VersionId (as SeaweedFS answers): (key, the marker's version ID).
    deleted_markers: Mapping[tuple[str, str], bool] = field(default_factory=dict)


def delete_objects_body(objects: Sequence[tuple[str, str | None]]) -> bytes:
    """The XML for DeleteObjects, in verbose mode, for (key, version ID or None) pairs."""
    parts = []
    for key, version in objects:
        version_xml = f"<VersionId>{escape(version)}</VersionId>" if version is not None else ""
        parts.append(f"<Object><Key>{escape(key)}</Key>{version_xml}</Object>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>false</Quiet>{"".join(parts)}</Delete>'
    ).encode()


def _root(body: bytes, expected: str) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3ReplyError("it declares a document type")  # S3 replies never do; entities could expand
    try:
        root = ET.fromstring(body)  # noqa: S314  (no DTD, bounded size: see above and the transport)
    except (ET.ParseError, ValueError, LookupError) as error:
        raise S3ReplyError("not XML") from error
    if root.tag.removeprefix(_NS) != expected:
        raise S3ReplyError(f"expected {expected}, got {root.tag.removeprefix(_NS)[:40]}")
    return root


def _text(entry: ET.Element, name: str) -> str | None:
    return entry.findtext(f"{_NS}{name}")


def parse_delete_result(body: bytes) -> DeleteResult:
    root = _root(body, "DeleteResult")
    deleted: dict[tuple[str, str | None], bool] = {}
    errors: dict[tuple[str, str | None], str] = {}
    codes: dict[tuple[str, str | None], str] = {}
    deleted_markers: dict[tuple[str, str], bool] = {}
    for entry in root.iter(f"{_NS}Deleted"):
        key = _text(entry, "Key")
        if key is None:
            continue
        version = _text(entry, "VersionId")
        marker = (_text(entry, "DeleteMarker") or "").strip() == "true"
        deleted[key, version] = marker
        marker_version = _text(entry, "DeleteMarkerVersionId")
        if version is None and marker and marker_version is not None:
            deleted_markers[key, marker_version] = True
    for entry in root.iter(f"{_NS}Error"):
        key = _text(entry, "Key")
        if key is not None:
            code = (_text(entry, "Code") or "Unknown").strip()
            message = (_text(entry, "Message") or "").strip()
            errors[key, _text(entry, "VersionId")] = f"{code}: {message}" if message else code
            codes[key, _text(entry, "VersionId")] = code
    return DeleteResult(deleted, errors, codes, deleted_markers)


def parse_list_objects(body: bytes) -> tuple[list[str], str | None]:
    """From a ListObjectsV2 page: its keys, and the token of the next page (None after the last)."""
    root = _root(body, "ListBucketResult")
    keys = [key for entry in root.iter(f"{_NS}Contents") if (key := _text(entry, "Key")) is not None]
    if (_text(root, "IsTruncated") or "").strip() != "true":
        return keys, None
    token = _text(root, "NextContinuationToken")
    if not token:
        raise S3ReplyError("a truncated listing without NextContinuationToken")
    return keys, token


def parse_versions(body: bytes, key: str) -> tuple[list[str], str | None, str | None]:
    """From a ListObjectVersions page: the version IDs of exactly ``key`` (data and delete markers),
    and the markers of the next page (None, None when this was the last)."""
    root = _root(body, "ListVersionsResult")
    versions = [
        version
        for tag in ("Version", "DeleteMarker")
        for entry in root.iter(f"{_NS}{tag}")
        if _text(entry, "Key") == key and (version := _text(entry, "VersionId")) is not None
    ]
    if (_text(root, "IsTruncated") or "").strip() != "true":
        return versions, None, None
    next_key, next_version = _text(root, "NextKeyMarker"), _text(root, "NextVersionIdMarker")
    if next_key is None:
        raise S3ReplyError("a truncated listing without NextKeyMarker")
    return versions, next_key, next_version


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error reply, for messages; empty if the body is not one."""
    try:
        code = _root(body, "Error").findtext("Code") or ""
    except S3ReplyError:
        return ""
    return code[:64] if code.isascii() and code.isprintable() else ""
