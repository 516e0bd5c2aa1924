"""When a call's own timestamp is believed, on the one clock every commit shares.

A worker stamps its events; Redis stamps each commit (a stream entry id's
first half is the millisecond Redis stored it). For a live call the two agree
to within a retry window. A ``call_started`` dated far from its commit is a
backfill (the documentation's example events are dated 2025), a test fixture
or a worker whose clock is wrong; measuring a live call's age from it would
give a duration of months (Get Call) or end it at once with reason ``timeout``
(the reaper). Both sides therefore measure such a call from its commit, and
they do it here, so the replica's duration and the reaper's agree.
"""

from __future__ import annotations

from typing import Final

# Far more than a worker's commit retries take (10 s) or NTP-synced clocks
# drift apart, far less than any maximum call duration worth setting.
MAX_CLOCK_SKEW_MS: Final = 5 * 60_000


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
