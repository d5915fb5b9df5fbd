"""Layer storage. A secret a storage reads from a file mounted from a Secret (a bearer token, an account
key): read again when the file changes, so that a rotated Secret takes effect without a restart,
checked when it is read, and registered for redaction before anything could quote it. A file that
cannot be read, or does not hold the secret, makes the storage unavailable, with a fixed message that
names the file and never its content."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from filecleanup.api import redaction
from filecleanup.storage.errors import StorageUnavailable

T = TypeVar("T")


class SecretFile(Generic[T]):
    def __init__(self, storage: str, path: Path, what: str, parse: Callable[[str], T]) -> None:
        """``what`` names the file in messages ("token file"); ``parse`` turns its text into the secret,
        or raises ValueError saying what the file does not hold ("does not hold a base64 key")."""
        self._storage = storage
        self._path = path
        self._what = what
        self._parse = parse
        self._mtime_ns = -1  # never read: the first call reads it
        self._value: T

    def value(self) -> T:
        try:
            mtime_ns = self._path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                text = self._path.read_text()
                redaction.register(text.strip())
                try:
                    self._value = self._parse(text)
                except ValueError as error:
                    raise StorageUnavailable(
                        f"storage {self._storage}: {self._what} {self._path} {error}"
                    ) from error
                self._mtime_ns = mtime_ns
        except (OSError, UnicodeDecodeError) as error:
            reason = (
                errno.errorcode.get(error.errno or 0, "unreadable")
                if isinstance(error, OSError)
                else "not UTF-8"
            )
            raise StorageUnavailable(
                f"storage {self._storage}: cannot read {self._what} {self._path} ({reason})"
            ) from error
        return self._value
