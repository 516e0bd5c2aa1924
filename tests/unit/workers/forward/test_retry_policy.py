from __future__ import annotations

from datetime import UTC, datetime

from workers.forward.retry_policy import RETRY_CAP_S, RetryPolicy
from workers.forward.sender import AttemptResult, retry_after

FAILED = AttemptResult(500, 1.0, error="HTTP 500")


def test_full_jitter_from_about_the_base_up_to_the_cap() -> None:
    highest = RetryPolicy(60_000, base_s=1.0, cap_s=600.0, rand=lambda: 1.0)
    lowest = RetryPolicy(60_000, base_s=1.0, cap_s=600.0, rand=lambda: 0.0)
    assert highest.delay_s(1, FAILED) == 1.0
    assert highest.delay_s(3, FAILED) == 4.0
    assert highest.delay_s(50, FAILED) == 600.0
    assert lowest.delay_s(50, FAILED) == 0.0


def test_retry_after_is_honoured_over_the_backoff_up_to_ten_minutes() -> None:
    policy = RetryPolicy(60_000, base_s=0.05, cap_s=0.2, rand=lambda: 1.0)
    assert policy.delay_s(1, AttemptResult(429, 1.0, retry_after_s=3.0)) == 3.0
    assert policy.delay_s(1, AttemptResult(503, 1.0, retry_after_s=86_400.0)) == RETRY_CAP_S


def test_a_retry_beyond_the_window_is_given_up() -> None:
    policy = RetryPolicy(1000)
    assert not policy.gives_up(first_attempt_ms=10_000, retry_at_ms=10_999)
    assert policy.gives_up(first_attempt_ms=10_000, retry_at_ms=11_000)


def test_a_retry_after_date_is_waited_for_and_a_past_one_retries_at_once() -> None:
    policy = RetryPolicy(60_000, base_s=0.05, cap_s=0.2, rand=lambda: 1.0)
    now = datetime(2025, 6, 14, 18, 30, tzinfo=UTC)
    later = AttemptResult(503, 1.0, retry_after_s=retry_after(
        "Sat, 14 Jun 2025 18:30:45 GMT", now=now))
    past = AttemptResult(429, 1.0, retry_after_s=retry_after(
        "Wed, 21 Oct 2015 07:28:00 GMT", now=now))
    far = AttemptResult(429, 1.0, retry_after_s=retry_after(
        "Sun, 15 Jun 2025 18:30:00 GMT", now=now))
    garbage = AttemptResult(429, 1.0, retry_after_s=retry_after("tomorrow", now=now))
    assert policy.delay_s(1, later) == 45.0
    assert policy.delay_s(1, past) == 0.0
    assert policy.delay_s(1, far) == RETRY_CAP_S
    assert policy.delay_s(3, garbage) == 0.2  # the backoff decides
