"""Layer api. Sets of indexes into ``spec.keys``, written as ranges the way a Job writes ``failedIndexes``.

``"0-99,150,200-201"`` keeps the authoritative set of keys still to delete small in status,
whatever the keys look like: 10,000 keys still pending are ``"0-9999"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from filecleanup.api.wording import plural


class IndexRangeError(ValueError):
    """A range string that is not ``N`` or ``A-B`` items, ascending, separated by commas."""


def format_ranges(indexes: Iterable[int]) -> str:
    ordered = sorted(set(indexes))
    parts: list[str] = []
    position = 0
    while position < len(ordered):
        start = ordered[position]
        end = start
        while position + 1 < len(ordered) and ordered[position + 1] == end + 1:
            position += 1
            end = ordered[position]
        parts.append(str(start) if start == end else f"{start}-{end}")
        position += 1
    return ",".join(parts)


def parse_ranges(text: str, size: int) -> list[int]:
    """The ascending indexes that ``text`` names, each below ``size``; the inverse of
    :func:`format_ranges`. A range is checked before it is expanded, so that no text (a hand-edited
    status, say "0-5000000" for three keys) can make a large list."""
    if not text:
        return []
    indexes: list[int] = []
    for part in text.split(","):
        start_text, dash, end_text = part.partition("-")
        if not _is_number(start_text) or (dash and not _is_number(end_text)):
            raise IndexRangeError(f"bad index range {part[:40]!r}")
        start = int(start_text)
        end = int(end_text) if dash else start
        if end < start or (indexes and start <= indexes[-1]):
            raise IndexRangeError(f"index range {part!r} is not ascending")
        if end >= size:
            raise IndexRangeError(f"index range {part!r} goes past the {plural(size, 'key')}")
        indexes.extend(range(start, end + 1))
    return indexes


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9  # noqa: PLR2004  (no index has more digits)
