"""Plausible timestamps: when a call's own ``timestamp`` is believed.

A worker stamps its events; Redis stamps each commit (a stream entry id's
first half is the millisecond Redis stored it). For a live call the two agree
to within a retry window. A ``call_started`` dated far from its commit is a
backfill (the README's example events are dated 2025), a test fixture or a
worker whose clock is wrong; measuring a live call's age from it would end it
at once with reason ``timeout`` (or never). So the write side warns about it
(``CallPublisher``) and the reaper measures such a call from its commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from callhub.events import CallStarted
from callhub.plurals import counted

# Far more than a worker's commit retries take (10 s) or NTP-synced clocks
# drift apart, far less than any maximum call duration worth setting.
MAX_CLOCK_SKEW_MS: Final = 5 * 60_000

_UNITS: Final = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def entry_ms(entry_id: bytes | str) -> int:
    """The millisecond Redis committed the stream entry ``entry_id`` (``ms-seq``)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def skew_ms(timestamp_ms: int, committed_ms: int) -> int | None:
    """How far the timestamp is from the commit, if farther than is plausible."""
    skew = timestamp_ms - committed_ms
    return skew if abs(skew) > MAX_CLOCK_SKEW_MS else None


def start_ms(timestamp_ms: int, committed_ms: int | None) -> int:
    """When a call started, for measuring its age: its ``call_started``'s
    timestamp if plausible, else when the hub first saw it (its commit)."""
    if committed_ms is None or skew_ms(timestamp_ms, committed_ms) is None:
        return timestamp_ms
    return committed_ms


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
