"""Batch replies framed as multipart/mixed (GCS's JSON-API batch, Azure's Blob Batch), read whatever
their bytes: sub-responses by index, or a classified error, never a crash."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from filecleanup.storage import azureblob, gcs, multipart
from filecleanup.storage.errors import ReplyBroken


@pytest.mark.parametrize("content_id", [gcs.CONTENT_ID, azureblob.CONTENT_ID], ids=["gcs", "azureblob"])
@given(body=st.binary(max_size=600), content_type=st.text(max_size=60))
def test_any_batch_reply_gives_sub_replies_or_a_classified_error(
    content_id: re.Pattern[str], body: bytes, content_type: str
) -> None:
    try:
        replies = multipart.sub_replies(content_type, body, 3, content_id)
    except ReplyBroken:
        return  # the chunk's keys fail, unconfirmed
    assert all(0 <= index < 3 and 100 <= reply.status <= 999 for index, reply in replies.items())
