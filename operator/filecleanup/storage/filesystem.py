"""Files on a mounted volume (NFS, a PVC): keys are paths relative to ``root``.

Escaping the root is impossible by construction: the path is walked one directory at a time from a
descriptor of the root, opening each directory with ``O_NOFOLLOW``, so no symlink is followed and no
``..`` is accepted; the file is then unlinked relative to its directory's descriptor. The calls run in
a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from filecleanup.config import FilesystemStorageConfig
from filecleanup.storage.base import ChunkResult, StorageUnavailable

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class KeyRejectedError(ValueError):
    """A key that cannot name a file below the root."""


def path_segments(key: str) -> list[str]:
    """The key's path segments, without empty and '.' ones; '..' is refused."""
    segments = [segment for segment in key.split("/") if segment not in {"", "."}]
    if not segments:
        raise KeyRejectedError("names the root itself")
    if ".." in segments:
        raise KeyRejectedError("has a '..' path segment")
    if any("\x00" in segment for segment in segments):
        raise KeyRejectedError("has a NUL character")
    return segments


def delete_below(root: Path, key: str, *, prune_empty_dirs: bool) -> None:
    """Delete ``root/key`` without following any symlink; a missing file counts as deleted."""
    *directories, name = path_segments(key)
    opened = [os.open(root, _DIRECTORY_FLAGS)]
    try:
        for directory in directories:
            try:
                opened.append(os.open(directory, _DIRECTORY_FLAGS, dir_fd=opened[-1]))
            except FileNotFoundError:
                return
            except OSError as error:
                if error.errno not in {errno.ENOTDIR, errno.ELOOP}:
                    raise
                kind = "a symlink, which is not followed" if _is_symlink(directory, opened[-1]) else "a file"
                raise KeyRejectedError(f"{directory!r} is {kind}") from error
        try:
            os.unlink(name, dir_fd=opened[-1])
        except FileNotFoundError:
            return
        except IsADirectoryError as error:
            raise KeyRejectedError("is a directory") from error
        if prune_empty_dirs:
            _prune(opened, directories)
    finally:
        for descriptor in opened:
            os.close(descriptor)


def _is_symlink(name: str, directory: int) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)


def _prune(opened: list[int], directories: list[str]) -> None:
    """Remove the now-empty directories from the deepest up, never the root itself."""
    for depth in range(len(directories) - 1, -1, -1):
        try:
            os.rmdir(directories[depth], dir_fd=opened[depth])
        except OSError as error:
            if error.errno in {errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EBUSY}:
                return
            raise


class FilesystemStorage:
    max_keys_per_call: int | None = None

    def __init__(self, name: str, config: FilesystemStorageConfig) -> None:
        self.name = name
        self._root = config.root
        self._prune = config.prune_empty_dirs

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        return await asyncio.to_thread(self._delete, keys)

    def _delete(self, keys: Sequence[str]) -> ChunkResult:
        if not self._root.is_dir():
            raise StorageUnavailable(f"storage {self.name}: root {self._root} is not a mounted directory")
        deleted: list[str] = []
        errors: dict[str, str] = {}
        for key in keys:
            try:
                delete_below(self._root, key, prune_empty_dirs=self._prune)
            except KeyRejectedError as error:
                errors[key] = f"key {error}"
            except OSError as error:
                errors[key] = f"{errno.errorcode.get(error.errno or 0, 'OSError')}: {error.strerror}"
            else:
                deleted.append(key)
        return ChunkResult.from_reply(keys, deleted, errors)

    async def aclose(self) -> None:
        """Nothing to release: each call opens and closes its own descriptors."""
