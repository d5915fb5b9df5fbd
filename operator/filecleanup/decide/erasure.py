"""Layer decide. When an album's erasure clock started: the album service's deletion, as its annotation
says, or else the object's creation. An annotation is anyone's to write, so it is believed only within
bounds: never after the object's creation, never more than MAX_LEAD before it."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from filecleanup.api.models import ALBUM_DELETED_AT_ANNOTATION

# An outbox row waits for its relay; a year is longer than any erasure deadline that matters.
MAX_LEAD = datetime.timedelta(days=366)
MAX_ANNOTATION_LENGTH = 64  # an RFC 3339 time is about 30 characters


def erasure_started(annotations: Mapping[str, str], created: datetime.datetime) -> datetime.datetime:
    """The album's deletion (``ALBUM_DELETED_AT_ANNOTATION``, RFC 3339 with its offset) when it reads
    as one within bounds; else ``created``."""
    text = annotations.get(ALBUM_DELETED_AT_ANNOTATION)
    if not isinstance(text, str) or len(text) > MAX_ANNOTATION_LENGTH:
        return created
    try:
        deleted = datetime.datetime.fromisoformat(text)
    except ValueError:
        return created
    if deleted.utcoffset() is None or not created - MAX_LEAD <= deleted <= created:
        return created
    return deleted
