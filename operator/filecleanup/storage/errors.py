"""Per-key errors by class: a *permanent* error (access denied, an invalid name) will fail the same way
however often the key is sent, so it is not retried in the object's drive; a *transient* one (the
storage busy, an internal error) is retried within the key's budget. An unknown code is transient:
retries are bounded anyway, and a wrong "permanent" would give up on a key that could be deleted.

Each backend names its errors by a code: S3's ``<Code>``, the HTTP contract's optional ``code``, the
filesystem's errno name. A storage's ``permanentErrors`` and ``transientErrors`` override the
defaults below, code by code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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

# The HTTP contract's codes (README, "The HTTP storage API"): an error item may carry one.
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
