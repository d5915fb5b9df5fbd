"""Layer api. Counts in the messages people read: status conditions, events, log lines and the CLI's
output say "1 key" and "2 keys", "1 was" and "2 were", never "1 keys"."""

from __future__ import annotations


def agreeing(count: int, one: str, many: str) -> str:
    """The word that agrees with ``count``: ``one`` for exactly one, else ``many`` (zero included, as in
    English): ``agreeing(1, "was", "were")`` is "was"."""
    return one if count == 1 else many


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun that agrees with it: ``plural(1, "key")`` is "1 key", ``plural(0, "key")``
    "0 keys", ``plural(3, "retry", "retries")`` "3 retries"."""
    return f"{count} {agreeing(count, singular, plural_form or f'{singular}s')}"
