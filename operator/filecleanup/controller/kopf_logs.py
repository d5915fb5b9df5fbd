"""Layer controller. One log line per thing that happened, at its level, where Kopf's framework lines say
otherwise.

Kopf logs ``Handler 'x' succeeded.`` at INFO for every handled watch event (the phase counter sees
each one), and every requeue the reconciler asks for, a ``kopf.TemporaryError``, as ``[ERROR] Handler
'x' failed temporarily``. The reconciler already logs what happened (Completed, Retry scheduled, ...)
with the object and the storage. Kopf has no setting for these lines: a filter on its object logger
drops the success lines and says a requeue at INFO, with the delay."""

from __future__ import annotations

import logging
import re

# The reconciler's requeue, as handlers.py raises it: kopf.TemporaryError("next run in 12.5 s").
REQUEUE = re.compile(r"^Handler '[^']+' failed temporarily: (next run in [0-9.]+ s)$")


class KopfLogLevels(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if (
            record.levelno == logging.INFO
            and message.startswith("Handler '")
            and message.endswith(" succeeded.")
        ):
            return False
        if record.levelno == logging.ERROR and " failed temporarily: " in message:
            requeue = REQUEUE.match(message)
            level, text = (logging.INFO, f"Requeued: {requeue[1]}") if requeue else (logging.WARNING, message)
            record.levelno, record.levelname = level, logging.getLevelName(level)
            record.msg, record.args = text, None
        return True


def install() -> None:
    logging.getLogger("kopf.objects").addFilter(KopfLogLevels())
