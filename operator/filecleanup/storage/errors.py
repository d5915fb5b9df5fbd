"""Layer storage. Every error a storage reports, in one tree; and the classes of the per-key errors.

A backend reports a call's outcome in one way: a :class:`~filecleanup.storage.base.ChunkResult` when
the storage answered about the keys, an exception from this tree otherwise. Which branch it is decides
what follows, and for every backend alike::

    StorageError                    anything a storage reports that is not an answer about the keys
    ├── StorageUnavailable          an outage: the whole call failed for reasons that are not the
    │   │                           keys' fault (connect failure, 5xx, 401/403, a bad token file, a
    │   │                           volume not mounted); nothing is counted deleted, the keys stay
    │   │                           pending, and the object waits without spending their retries
    │   └── StorageThrottled        refused for overload (429, 503, S3 SlowDown): sent again after
    │                               the limiter's wait; throttling that lasts becomes unavailable
    ├── CallFailed                  this call failed, and the storage is up: the chunk's keys fail,
    │   │                           and are retried within their budget (base.chunk_outcome is the
    │   │                           one place where this becomes the chunk's failed keys)
    │   ├── OutcomeUnknown          no complete reply (a read timeout, the deadline, a broken
    │   │                           connection): the storage may have acted on the request
    │   ├── CallRefused             any other whole-call status (400, 404, 3xx, a 2xx not 200)
    │   └── ReplyBroken             a reply that breaks the contract: not the format, compressed,
    │                               or larger than a reply about these keys can be
    ├── ObjectError                 a whole object (a manifest, a failure report) as asked
    │   ├── ObjectMissing           the storage does not have it
    │   ├── ObjectRefused           it can never be used as asked (not a file, no permission, a
    │   │                           storage that holds no objects): whoever named it must fix it
    │   └── ObjectChanged           not the version that was read first
    └── NotSent                     the call waited for its turn under the storage's limits, and by
                                    then it was no longer wanted: nothing was sent

Two more never leave the backend that raises them: :class:`S3ReplyError` (S3 XML that is not the
expected reply, which the S3 backend turns into :class:`ReplyBroken`) and :class:`KeyRejectedError`
(a key that cannot name a file below a filesystem storage's root: that key's failure, or
:class:`ObjectRefused` for a manifest).

Every message is fixed and classified: never an exception's text from a library, which may quote the
request's headers (a bearer token, a session token).

**Per-key errors by class**: a *permanent* error (access denied, an invalid name) will fail the same
way however often the key is sent, so it is not retried in the object's drive; a *transient* one (the
storage busy, an internal error) is retried within the key's budget. An unknown code is transient:
retries are bounded anyway, and a wrong "permanent" would give up on a key that could be deleted.

Each backend names its errors by a code: S3's ``<Code>``, the HTTP contract's optional ``code``, the
filesystem's errno name. A storage's ``permanentErrors`` and ``transientErrors`` override the
defaults below, code by code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class StorageError(Exception):
    """Anything a storage reports that is not an answer about the keys (the tree above)."""


class StorageUnavailable(StorageError):  # noqa: N818  (the name is the public contract)
    """The whole call failed for reasons that are not the keys' fault: nothing is known deleted.

    Connection refused, connect timeout, DNS failure, a 5xx, 401/403, 503 or 429. The caller backs
    off and keeps the keys pending, without using up their retry budget.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageThrottled(StorageUnavailable):
    """The storage refused the whole call for overload (429, 503, S3 SlowDown): the keys were refused
    whole, so the call is sent again after the limiter's wait, and the storage's in-flight limit is
    cut. Only throttling that lasts becomes :class:`StorageUnavailable` (see storage/limits.py)."""


class CallFailed(StorageError):  # noqa: N818  (a classified outcome, not a bug)
    """This call failed while the storage is up: the keys it carried fail, within their budget. The
    message is fixed and classified."""


class OutcomeUnknown(CallFailed):
    """No complete reply: the storage may have acted on the request, or not."""


class CallRefused(CallFailed):
    """The storage answered the whole call with a status that is neither success, nor overload, nor
    an outage (storage/transport.py, :func:`~filecleanup.storage.transport.check_status`)."""


class ReplyBroken(CallFailed):
    """A reply that breaks the contract: it confirms nothing."""


class ObjectError(StorageError):
    """A whole object (a manifest, a failure report) that cannot be read or written as asked."""


class ObjectMissing(ObjectError):  # noqa: N818  (a plain fact: no such object)
    """A manifest or report object that the storage does not have."""


class ObjectRefused(ObjectError):  # noqa: N818  (a plain fact: the object cannot be used as asked)
    """A manifest or report object that the storage will never serve or take as asked, through the
    fault of whoever named or placed it (not a regular file, a name too long, no permission, a storage
    that holds no objects): waiting will not help, so it is never a storage outage."""


class ObjectChanged(ObjectError):  # noqa: N818  (a plain fact: not the object that was checked)
    """A manifest or report object is no longer the version that was read first."""


class NotSent(StorageError):  # noqa: N818  (a plain fact: the call never went out)
    """The call waited for its turn under the storage's limits, and by then it was no longer wanted."""


class S3ReplyError(ValueError):
    """A 200 reply that is not the XML the call returns (inside the S3 backend only)."""


class KeyRejectedError(ValueError):
    """A key that cannot name a file below the root (inside the filesystem backend only)."""


# S3 per-key codes of DeleteObjects (and what S3-compatible stores answer) that no retry can fix.
S3_PERMANENT = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "InvalidArgument",
        "InvalidBucketName",
        "InvalidObjectName",
        "InvalidObjectState",  # archived (Glacier): deleting it needs a restore first
        "KeyTooLongError",
        "MethodNotAllowed",
        "NoSuchBucket",
        "NotImplemented",
        "ObjectLockConfigurationNotFoundError",
    }
)
# For reference: SlowDown, InternalError, ServiceUnavailable, RequestTimeout and OperationAborted are
# S3's transient ones, as is any code not above.

# The HTTP contract's codes (docs/storage.md, "The HTTP storage API"): an error item may carry one.
HTTP_PERMANENT = frozenset({"AccessDenied", "InvalidKey"})

# The filesystem backend's codes: errno names, and KeyRejected for a key that cannot name a file
# below the root (a symlink or a file on its path, a directory as the key).
FILESYSTEM_PERMANENT = frozenset({"EACCES", "EPERM", "EROFS", "EISDIR", "ENAMETOOLONG", "KeyRejected"})


@dataclass(frozen=True)
class ErrorClasses:
    """Which codes are permanent: a backend's defaults, overridden by the storage's configuration."""

    defaults: frozenset[str]
    permanent: frozenset[str] = frozenset()
    transient: frozenset[str] = frozenset()

    @classmethod
    def configured(
        cls, defaults: frozenset[str], permanent: Iterable[str], transient: Iterable[str]
    ) -> ErrorClasses:
        return cls(defaults, frozenset(permanent), frozenset(transient))

    def is_permanent(self, code: str | None) -> bool:
        if code is None or code in self.transient:
            return False
        return code in self.permanent or code in self.defaults
