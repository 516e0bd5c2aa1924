"""Plausible timestamps (workers/commit/timestamps.py): which start a call's age
counts from, and the publisher's warning, once and then counted."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub import events as ev
from workers.commit.timestamps import (
    MAX_CLOCK_SKEW_MS,
    SkewWarnings,
    describe_skew,
    entry_ms,
    start_ms,
)

NOW_MS = 1_764_700_000_000


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_a_call_starts_at_its_timestamp_unless_that_is_implausibly_far_from_its_commit(
    skew: int,
) -> None:
    started = start_ms(NOW_MS + skew, NOW_MS)
    assert started == (NOW_MS + skew if abs(skew) <= MAX_CLOCK_SKEW_MS else NOW_MS)
    assert start_ms(NOW_MS + skew, None) == NOW_MS + skew  # no commit known: the timestamp


def test_entry_ids_and_skews_read_as_people_and_redis_say_them() -> None:
    assert entry_ms(b"1764700000000-3") == entry_ms("1764700000000-0") == 1_764_700_000_000
    assert describe_skew(-535 * 86_400_000) == "535 days before"
    assert describe_skew(3_600_000) == "1 hour after"
    assert describe_skew(-6 * 60_000) == "6 minutes before"


def started(session_id: str) -> ev.CallStarted:
    return ev.CallStarted(event_id="e", session_id=session_id, seq=1,
                          timestamp=datetime(2025, 6, 14, 18, 30, tzinfo=UTC),
                          caller_id="+1555", called_number="+1800", dialog_name="helpdesk")


def test_the_first_skewed_call_is_reported_at_once_the_rest_counted_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    warnings = SkewWarnings(logging.getLogger("test.skew"), clock=lambda: now[0])
    old = NOW_MS - 400 * 86_400_000
    with caplog.at_level("WARNING", logger="test.skew"):
        warnings.check(started("plausible"), NOW_MS - 1_000, f"{NOW_MS}-0")
        warnings.check(started("missing"), old, None)  # rejected: no entry, no warning
        for n in range(5):
            now[0] = n * 10.0
            warnings.check(started(f"old-{n}"), old, f"{NOW_MS}-0")
        now[0] = 61.0
        warnings.check(started("late"), old, f"{NOW_MS}-0")
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "old-0" in messages[0] and "400 days before" in messages[0]
    assert "more call" not in messages[0]
    assert "late" in messages[1] and "(4 more calls like it since the last warning)" in (
        messages[1])
