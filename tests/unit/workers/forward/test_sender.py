from __future__ import annotations

from workers.forward.sender import AttemptResult, retry_after


def test_retry_after_in_seconds_only() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(" 3 ") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after(None) is None
    assert retry_after("-1") is None


def test_only_2xx_is_delivered() -> None:
    assert AttemptResult(204, 1.0).delivered
    assert not AttemptResult(301, 1.0).delivered
    assert not AttemptResult(0, 1.0, error="timed out").delivered
