"""Layer album. What the CLI prints: tables as kubectl prints them (left-aligned columns three spaces apart,
no trailing blanks), and any text it did not write itself made safe for a terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0 controls, DEL and C1 controls (ESC and CSI start terminal escape sequences; CR, BS and LF rewrite or
# forge lines), and a backslash that would otherwise read as the start of an escape.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f]|\\(?=[\\x\x00-\x1f\x7f-\x9f])")


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    return "\\\\" if character == "\\" else f"\\x{ord(character):02x}"


def printable(text: str) -> str:
    """``text`` with each control character (C0, DEL, C1) written visibly as ``\\xHH``: text from an
    object's spec or status, a storage's or the API server's error, an outbox row, any of which a tenant
    may have written, can then neither send escape sequences to the terminal (recolour, move the cursor,
    retitle the window, write to the clipboard) nor forge a line or a column of the output. A backslash
    before ``x``, another backslash or a control character is doubled, so that distinct texts print
    distinctly; text without control characters prints as it is, other backslashes included."""
    return _UNSAFE.sub(_escape, text)


def columns(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the header first) as aligned lines, each cell made :func:`printable`."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
