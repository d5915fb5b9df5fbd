"""Layer storage. Files on a mounted volume (NFS, a PVC): keys are paths relative to ``root``.

Escaping the root is impossible by construction: the path is walked one directory at a time from a
descriptor of the root, opening each directory with ``O_NOFOLLOW``, so no symlink is followed and no
``..`` is accepted; the file is then unlinked relative to its directory's descriptor. The root itself
is the operator's configuration, so a root that is a symlink is followed (once, to open it).

A missing file counts as deleted, so the root must really be the volume: an empty directory left
where the volume should be mounted would make every key "deleted" while the files stay on the
volume. Before each call the root is checked: it must be a mount point (``requireMountpoint``, the
default) and hold ``markerFile`` if one is configured; otherwise the storage is unavailable. The calls
run in the storage's own bounded pool of threads, never on the event loop nor in its default pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from filecleanup.api.config import FilesystemStorageConfig
from filecleanup.storage.base import ChunkResult, ExistsResult, ObjectPart
from filecleanup.storage.errors import (
    FILESYSTEM_PERMANENT,
    ErrorClasses,
    KeyRejectedError,
    ObjectChanged,
    ObjectMissing,
    ObjectRefused,
    StorageUnavailable,
)

_T = TypeVar("_T")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MANIFEST_THREADS = 2
LIST_PAGE_KEYS = 1000  # a listing's keys are handed on this many at a time
# A manifest or report path that can never be read or written as it is: the fault of whoever named it.
OBJECT_REFUSED_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EPERM}
)


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


def _walk(root: int, directories: Sequence[str], *, create: bool) -> list[int] | None:
    """Descriptors of the root and of each directory down the path, opened without following any
    symlink (and made when ``create``); None when one is missing. The caller closes them."""
    opened = [os.dup(root)]
    try:
        for directory in directories:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(directory, 0o770, dir_fd=opened[-1])
            try:
                opened.append(os.open(directory, _DIRECTORY_FLAGS, dir_fd=opened[-1]))
            except FileNotFoundError:
                _close(opened)
                return None
            except OSError as error:
                if error.errno not in {errno.ENOTDIR, errno.ELOOP}:
                    raise
                kind = "a symlink, which is not followed" if _is_symlink(directory, opened[-1]) else "a file"
                raise KeyRejectedError(f"{directory!r} is {kind}") from error
    except BaseException:
        _close(opened)
        raise
    return opened


def _close(descriptors: Sequence[int]) -> None:
    for descriptor in descriptors:
        os.close(descriptor)


def delete_below(root: int, key: str, *, prune_empty_dirs: bool) -> None:
    """Delete ``key`` below the directory open as ``root`` without following any symlink; a missing
    file counts as deleted."""
    *directories, name = path_segments(key)
    opened = _walk(root, directories, create=False)
    if opened is None:
        return
    try:
        try:
            os.unlink(name, dir_fd=opened[-1])
        except FileNotFoundError:
            return
        except IsADirectoryError as error:
            raise KeyRejectedError("is a directory") from error
        if prune_empty_dirs:
            _prune(opened, directories)
    finally:
        _close(opened)


def exists_below(root: int, key: str) -> bool:
    """Whether ``key`` names something below the directory open as ``root`` that a delete would
    remove, walked as :func:`delete_below` walks it (no symlink followed). Raises
    :class:`KeyRejectedError` where a delete would refuse the key, and ``OSError`` as a delete would."""
    *directories, name = path_segments(key)
    opened = _walk(root, directories, create=False)
    if opened is None:
        return False
    try:
        try:
            mode = os.stat(name, dir_fd=opened[-1], follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            raise KeyRejectedError("is a directory")
        return True
    finally:
        _close(opened)


def file_version(info: os.stat_result) -> str:
    """A file's identity as it was read: replaced, rewritten or grown, it is another version."""
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def read_below(root: int, key: str, offset: int, size: int, version: str = "") -> ObjectPart:
    """Up to ``size`` bytes of the file ``key`` from ``offset`` (nothing past its end), without
    following any symlink, and never blocking on something that is not a regular file (a FIFO, a
    device). Raises :class:`ObjectMissing` when there is no such file, :class:`ObjectRefused` when it is
    not a regular file, and :class:`ObjectChanged` when it is not ``version``."""
    *directories, name = path_segments(key)
    opened = _walk(root, directories, create=False)
    if opened is None:
        raise ObjectMissing(key)
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            descriptor = os.open(name, flags, dir_fd=opened[-1])
        except FileNotFoundError as error:
            raise ObjectMissing(key) from error
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                raise ObjectRefused(f"{key!r} is not a regular file")
            if version and file_version(info) != version:
                raise ObjectChanged(key)
            return ObjectPart(os.pread(descriptor, size, offset), file_version(info))
        finally:
            os.close(descriptor)
    finally:
        _close(opened)


def write_below(root: int, key: str, data: bytes) -> None:
    """Write the file ``key`` whole, atomically (a temporary file renamed over it), making its
    directories, without following any symlink."""
    *directories, name = path_segments(key)
    opened = _walk(root, directories, create=True)
    if opened is None:  # made a moment ago, and gone: someone else is at work in there
        raise ObjectMissing(key)
    # A name nobody can guess, made anew (O_EXCL): nothing placed there beforehand (a FIFO, a
    # symlink) is ever opened.
    temporary = f".{name}.{secrets.token_hex(8)}.partial"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(temporary, flags, 0o660, dir_fd=opened[-1])
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.rename(temporary, name, src_dir_fd=opened[-1], dst_dir_fd=opened[-1])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=opened[-1])
            raise
    finally:
        _close(opened)


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


def list_below(root: int, prefix: str) -> list[str]:
    """The keys of the regular files below the directory ``prefix`` names (which ends in '/'), sorted;
    symlinks are neither followed nor listed. A missing directory lists nothing."""
    opened = _walk(root, path_segments(prefix), create=False)
    if opened is None:
        return []
    keys: list[str] = []
    try:
        _list_into(opened[-1], prefix, keys)
    finally:
        _close(opened)
    return sorted(keys)


def _list_into(directory: int, prefix: str, keys: list[str]) -> None:
    for entry in os.scandir(directory):
        if entry.is_symlink():
            continue
        if entry.is_file(follow_symlinks=False):
            keys.append(prefix + entry.name)
        elif entry.is_dir(follow_symlinks=False):
            child = os.open(entry.name, _DIRECTORY_FLAGS, dir_fd=directory)
            try:
                _list_into(child, f"{prefix}{entry.name}/", keys)
            finally:
                os.close(child)


def open_root(name: str, config: FilesystemStorageConfig) -> int:
    """A descriptor of the storage's root, once it is known to be the volume. Raises
    :class:`StorageUnavailable` when it is missing, not a directory, not mounted, or without its marker."""
    root = config.root
    try:
        descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root may be a symlink
    except OSError as error:
        reason = (
            "missing" if error.errno == errno.ENOENT else errno.errorcode.get(error.errno or 0, "unusable")
        )
        raise StorageUnavailable(f"storage {name}: root {root} is not a directory ({reason})") from error
    problem = None
    if config.require_mountpoint and not os.path.ismount(root.resolve()):
        problem = (
            "is not a mount point: is the volume mounted? (requireMountpoint; a markerFile can stand in)"
        )
    elif config.marker_file is not None and not _is_file(config.marker_file, descriptor):
        problem = f"has no {config.marker_file}: is the volume mounted?"
    if problem is not None:
        os.close(descriptor)
        raise StorageUnavailable(f"storage {name}: root {root} {problem}")
    return descriptor


def _is_file(name: str, directory: int) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


class FilesystemStorage:
    """Files below ``root``: it deletes, holds whole objects for manifests and checks existence for
    dry runs (storage/base.py's capabilities)."""

    max_keys_per_call: int | None = None

    def __init__(self, name: str, config: FilesystemStorageConfig) -> None:
        self.name = name
        self._config = config
        self._classes = ErrorClasses.configured(
            FILESYSTEM_PERMANENT, config.permanent_errors, config.transient_errors
        )
        # Every call in flight under maxConcurrentRequests, and one manifest read or report write.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            config.max_concurrent_requests + MANIFEST_THREADS, thread_name_prefix=f"storage-{name}"
        )

    async def delete(self, keys: Sequence[str]) -> ChunkResult:
        return await self._in_pool(self._delete, keys)

    def _delete(self, keys: Sequence[str]) -> ChunkResult:
        root = open_root(self.name, self._config)
        deleted: list[str] = []
        errors: dict[str, str] = {}
        permanent: list[str] = []
        try:
            for key in keys:
                try:
                    delete_below(root, key, prune_empty_dirs=self._config.prune_empty_dirs)
                except KeyRejectedError as error:
                    code = "KeyRejected"
                    errors[key] = f"key {error}"
                except OSError as error:
                    code = errno.errorcode.get(error.errno or 0, "OSError")
                    errors[key] = f"{code}: {error.strerror}"
                else:
                    deleted.append(key)
                    continue
                if self._classes.is_permanent(code):
                    permanent.append(key)
        finally:
            os.close(root)
        return ChunkResult.from_reply(keys, deleted, errors, permanent)

    async def exists(self, keys: Sequence[str]) -> ExistsResult:
        """A dry run's check: a stat with the walk a delete uses. A key the walk refuses, or a
        permission error, is forbidden; any other error leaves the key unknown."""
        return await self._in_pool(self._exists, keys)

    def _exists(self, keys: Sequence[str]) -> ExistsResult:
        root = open_root(self.name, self._config)
        existing: list[str] = []
        missing: list[str] = []
        forbidden: list[str] = []
        try:
            for key in keys:
                try:
                    (existing if exists_below(root, key) else missing).append(key)
                except KeyRejectedError:
                    forbidden.append(key)
                except OSError as error:
                    if error.errno in {errno.EACCES, errno.EPERM}:
                        forbidden.append(key)
        finally:
            os.close(root)
        return ExistsResult.from_reply(keys, existing, missing, forbidden)

    async def list_keys(self, prefix: str) -> AsyncIterator[list[str]]:
        """The regular files below ``prefix``, walked as a delete walks (no symlink followed, none
        listed), in sorted order, a page at a time."""
        keys = await self._in_pool(self._with_root, list_below, prefix)
        for start in range(0, len(keys), LIST_PAGE_KEYS):
            yield keys[start : start + LIST_PAGE_KEYS]

    async def read(self, key: str, offset: int, size: int, *, version: str = "") -> ObjectPart:
        return await self._in_pool(self._with_root, read_below, key, offset, size, version)

    async def write(self, key: str, data: bytes) -> None:
        await self._in_pool(self._with_root, write_below, key, data)

    def _with_root(self, operation: Callable[..., _T], key: str, *arguments: Any) -> _T:
        root = open_root(self.name, self._config)
        try:
            return operation(root, key, *arguments)
        except KeyRejectedError as error:
            raise ObjectRefused(f"storage {self.name}: {key!r}: key {error}") from error
        except OSError as error:
            reason = errno.errorcode.get(error.errno or 0, "OSError")
            if error.errno in OBJECT_REFUSED_ERRNOS:
                raise ObjectRefused(f"storage {self.name}: {key!r}: {reason}") from error
            raise StorageUnavailable(f"storage {self.name}: {key!r}: {reason}") from error
        finally:
            os.close(root)

    async def _in_pool(self, function: Callable[..., _T], *arguments: Any) -> _T:
        """Blocking file calls run in this storage's own threads, never in the event loop's default
        pool: a slow or stuck volume holds up this storage alone."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *arguments)

    async def aclose(self) -> None:
        """Each call opens and closes its own descriptors; the threads go."""
        self._pool.shutdown(wait=False, cancel_futures=True)
