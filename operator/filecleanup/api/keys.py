"""Layer api. What a storage key may be. The CRD enforces the same rules (one pattern), and the
operator checks them itself before any call, whatever CRD is installed: an older one kept with
``crds.enabled=false``, or a hand-edited one. With these rules a key is its own
normal form: no backend's path normalisation can move it out of the prefix its policy allows."""

from __future__ import annotations

import re

MAX_KEY_LENGTH = 1024
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")  # ASCII controls; a manifest checks a million keys


def key_problem(key: str) -> str | None:  # noqa: PLR0911  (one rule, one message, as in the CRD)
    """Why ``key`` is not a valid storage key, in words (the CRD's pattern only says it does not match),
    or None."""
    if not key:
        return "a key must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"a key must be at most {MAX_KEY_LENGTH} characters"
    if CONTROL_CHARACTER.search(key):
        return "a key must not contain control characters"
    if key.startswith("/"):
        return "a key must not start with '/'"
    segments = key.split("/")
    if "" in segments:
        return "a key must not have an empty path segment"
    if "." in segments:
        return "a key must not have a '.' path segment"
    if ".." in segments:
        return "a key must not contain a '..' path segment"
    return None


def strip_bom(text: str) -> str:
    """``text`` without the UTF-8 byte order mark some editors (Notepad, Excel's "CSV UTF-8") put at the
    start of a file. Left there, it would be the first character of the first key: a key that names no
    file, which a storage reports as deleted while the real file stays. Only a mark at the very start is
    removed; one anywhere else is part of a key."""
    return text.removeprefix("\ufeff")
