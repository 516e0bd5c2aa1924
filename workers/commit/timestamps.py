"""Implausible timestamps on the write side: the publisher's warning.

When a ``call_started`` is believed is the kernel's (``callhub/commit_time.py``:
the reaper and Get Call measure an implausibly dated call from its commit);
here the write side says so when it commits one, so a backfill or a wrong
clock is noticed rather than refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from callhub.commit_time import entry_ms, skew_ms
from callhub.events import CallStarted
from callhub.plurals import counted

_UNITS: Final = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def describe_skew(skew: int) -> str:
    """``3 days before`` / ``2 hours after``: a skew in words, for a warning."""
    seconds = abs(skew) // 1000
    unit, size = next(((unit, size) for unit, size in _UNITS if seconds >= size), _UNITS[-1])
    return f"{counted(seconds // size, unit)} {'before' if skew < 0 else 'after'}"


class SkewWarnings:
    """Warns (never refuses) when a committed ``call_started`` is dated
    implausibly far from its commit: at once for the first, then at most once a
    minute with a count, so a backfill of thousands of calls is a few lines."""

    def __init__(self, log: logging.Logger, *, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self._unreported = 0

    def check(self, event: CallStarted, stamped_ms: int, entry_id: str | None) -> None:
        """Warn if ``event`` (dated ``stamped_ms``), committed at ``entry_id``, is skewed."""
        if entry_id is None:
            return
        skew = skew_ms(stamped_ms, entry_ms(entry_id))
        if skew is None:
            return
        now = self._clock()
        if self._last is not None and now - self._last < self._every_s:
            self._unreported += 1
            return
        more = (f" ({counted(self._unreported, 'more call')} like it since the last warning)"
                if self._unreported else "")
        self._last, self._unreported = now, 0
        self._log.warning(
            "call_started of %s is dated %s, %s Redis committed it (a backfill, or a wrong "
            "clock?)%s: stored as given; the reaper counts its CALLHUB_MAX_CALL_DURATION from "
            "the commit", event.session_id, event.timestamp.isoformat().replace("+00:00", "Z"),
            describe_skew(skew), more)
