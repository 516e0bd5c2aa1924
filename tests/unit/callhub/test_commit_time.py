"""When a call's timestamp is believed (callhub/commit_time.py): which start a
call's age counts from, and the commit time an entry id carries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callhub.commit_time import MAX_CLOCK_SKEW_MS, entry_ms, skew_ms, start_ms

NOW_MS = 1_764_700_000_000


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_a_call_starts_at_its_timestamp_unless_that_is_implausibly_far_from_its_commit(
    skew: int,
) -> None:
    started = start_ms(NOW_MS + skew, NOW_MS)
    assert started == (NOW_MS + skew if abs(skew) <= MAX_CLOCK_SKEW_MS else NOW_MS)
    assert start_ms(NOW_MS + skew, None) == NOW_MS + skew  # no commit known: the timestamp
    assert (skew_ms(NOW_MS + skew, NOW_MS) is None) == (abs(skew) <= MAX_CLOCK_SKEW_MS)


def test_an_entry_id_carries_its_commit_millisecond() -> None:
    assert entry_ms(b"1764700000000-3") == entry_ms("1764700000000-0") == 1_764_700_000_000
