"""Layer api. Secrets never leave the process in text: every secret the operator reads (a bearer token, an S3
secret key or session token) is registered here, and every text bound for a log line, a status field or an
event passes through :func:`redact` first.

This is the second line of defence. The first is that no such text is built from exception messages
or replies that could carry a request's headers; but a storage's reply is not ours to trust, and a
library's debug line is not ours to write.
"""

from __future__ import annotations

import logging
import threading

REDACTED = "[redacted]"
# Shorter strings would redact ordinary words; no credential is this short.
MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register(secret: str | None) -> None:
    """Remember a secret (and its stripped form) so that it is redacted from now on."""
    global _secrets  # noqa: PLW0603  (one process-wide set, swapped atomically)
    if not secret:
        return
    forms = {secret, secret.strip()}
    with _lock:
        _secrets = _secrets | {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def redact(text: str) -> str:
    secrets = _secrets
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: a secret may contain another
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments and traceback included) with every secret redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_filter() -> None:
    """Put the filter on every handler of the root logger (Kopf's included), and on the root logger."""
    root = logging.getLogger()
    redacting = RedactingFilter()
    root.addFilter(redacting)
    for handler in root.handlers:
        handler.addFilter(redacting)
