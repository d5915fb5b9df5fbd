"""Layer storage. Batch calls framed as multipart/mixed, one HTTP request per part (Google Cloud Storage's
JSON-API batch, Azure's Blob Batch): the request's body, and the sub-responses read whatever their bytes.
A part that names no sub-request of ours, or has no status line, is left out: its key then failed
(unconfirmed), never deleted."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

from filecleanup.storage import holds
from filecleanup.storage.base import ChunkResult
from filecleanup.storage.errors import ErrorClasses, ReplyBroken

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] ([0-9]{3})(?:[ \t][^\r\n]*)?(?:\r?\n|$)")


@dataclass(frozen=True)
class SubReply:
    """One sub-response: its status, and the headers it named (lower-cased names; the first of each)."""

    status: int
    headers: dict[str, str]


def batch_body(requests: Sequence[str], content_id: str) -> tuple[str, bytes]:
    """A batch of sub-requests (each its request line and header lines, each line ending with CRLF),
    numbered from 0 with ``content_id`` (a format with ``{index}``): the boundary and the body. Each
    part ends with the blank line that ends its request's headers; its last CRLF belongs to the
    delimiter that follows it."""
    boundary = f"batch_{uuid.uuid4()}"
    parts = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: {content_id.format(index=index)}\r\n\r\n{request}\r\n\r\n"
        for index, request in enumerate(requests)
    ]
    return boundary, ("".join(parts) + f"--{boundary}--\r\n").encode()


# A key's outcome in a sub-response: (deleted, error, error code).
KeyOutcome = tuple[bool, str, str | None]


async def delete_in_batches(
    keys: Sequence[str],
    size: int,
    send: Callable[[Sequence[str]], Awaitable[dict[int, SubReply]]],
    outcome: Callable[[SubReply], KeyOutcome],
    classes: ErrorClasses,
) -> ChunkResult:
    """A chunk's keys sent ``size`` at a time (``send``: one batch call, its sub-responses by index),
    each key's sub-response read by ``outcome``; a key with no sub-response failed (unconfirmed), and a
    key the storage holds (storage/holds.py) or whose error code is permanent is failed for good."""
    confirmed: list[str] = []
    errors: dict[str, str] = {}
    permanent: list[str] = []
    for start in range(0, len(keys), size):
        batch = keys[start : start + size]
        replies = await send(batch)
        for index, key in enumerate(batch):
            if index not in replies:
                continue  # unconfirmed: failed
            deleted, reason, code = outcome(replies[index])
            if deleted:
                confirmed.append(key)
            else:
                errors[key] = reason
                if holds.is_held(reason) or classes.is_permanent(code):
                    permanent.append(key)
    return ChunkResult.from_reply(keys, confirmed, errors, permanent)


def sub_replies(
    content_type: str, body: bytes, count: int, content_id: re.Pattern[str]
) -> dict[int, SubReply]:
    """Each sub-response, by the index of its sub-request (``content_id`` captures it from a part's
    Content-ID); raises :class:`ReplyBroken` for a reply that is not multipart, or that the parser
    cannot read at all."""
    try:
        return _sub_replies(content_type, body, count, content_id)
    except (ValueError, IndexError, TypeError) as error:
        raise ReplyBroken(f"the batch reply breaks the contract ({type(error).__name__})") from error


def _sub_replies(
    content_type: str, body: bytes, count: int, content_id: re.Pattern[str]
) -> dict[int, SubReply]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ReplyBroken("a batch reply that is not multipart/mixed")
    replies: dict[int, SubReply] = {}
    for part in message.iter_parts():
        found = content_id.match(str(part.get("Content-ID", "")).strip())
        payload = part.get_payload(decode=True)
        if found is None or not isinstance(payload, bytes):
            continue
        index = int(found.group(1))
        status = STATUS_LINE.match(payload)
        if status is None or not 0 <= index < count or index in replies:
            continue
        head = payload[status.end() :].split(b"\r\n\r\n", 1)[0]
        headers = BytesParser(policy=HTTP).parsebytes(head + b"\r\n\r\n", headersonly=True)
        replies[index] = SubReply(
            int(status.group(1)),
            {name.lower(): str(value) for name, value in reversed(headers.items())},
        )
    return replies
