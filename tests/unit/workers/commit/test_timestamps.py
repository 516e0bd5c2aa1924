"""The publisher's warning about implausible timestamps
(workers/commit/timestamps.py): its words, once and then counted."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from callhub import events as ev
from workers.commit.timestamps import SkewWarnings, describe_skew

NOW_MS = 1_764_700_000_000


def test_skews_read_as_people_say_them() -> None:
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
