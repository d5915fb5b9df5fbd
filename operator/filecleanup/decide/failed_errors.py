"""Layer decide. The whole failure report in status, kept small: failed keys grouped by their latest error,
each group an index-range string into spec.keys (``status.failedErrors``). With at most
:data:`MAX_FAILED_ERRORS` groups, the report of 10,000 failed keys stays tens of KB even when the errors
interleave key by key; the CLI (``filecleanup failed NAME``) expands it back into keys."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from filecleanup.api.indexes import format_ranges, parse_ranges
from filecleanup.api.models import MAX_FAILED_ERRORS, FailedError

OTHER_ERRORS = "other errors (the most common errors are listed separately)"


def group_by_error(failures: Iterable[tuple[int, str]]) -> list[FailedError]:
    """(index, error) pairs as groups, the most common errors first; past ``MAX_FAILED_ERRORS``
    errors, the least common share one group under :data:`OTHER_ERRORS`."""
    by_error: dict[str, list[int]] = defaultdict(list)
    for index, error in failures:
        by_error[error].append(index)
    ranked = sorted(by_error.items(), key=lambda item: (-len(item[1]), min(item[1])))
    if len(ranked) > MAX_FAILED_ERRORS:
        kept = ranked[: MAX_FAILED_ERRORS - 1]
        rest = [index for _, indexes in ranked[MAX_FAILED_ERRORS - 1 :] for index in indexes]
        ranked = [*kept, (OTHER_ERRORS, rest)]
    return [FailedError(error=error, indexes=format_ranges(indexes)) for error, indexes in ranked]


def expand(groups: Iterable[FailedError], keys: Sequence[str]) -> list[tuple[str, str]]:
    """Every failed key with its error, in the order of spec.keys."""
    pairs = [(index, group.error) for group in groups for index in parse_ranges(group.indexes, len(keys))]
    return [(keys[index], error) for index, error in sorted(pairs)]
