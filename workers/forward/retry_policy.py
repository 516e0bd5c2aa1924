"""RetryPolicy: when a failed delivery is tried again, and when it is given up.

Waits follow the shared ``Backoff`` with full jitter (a receiver that went
down for everyone gets its retries spread, not in bursts): about ``base_s``
before the first retry, growing to ``cap_s``. A receiver's own
``Retry-After`` (429, 503; delay-seconds or an HTTP-date, a past date
meaning at once) is honoured, up to ten minutes (whatever the backoff's own
cap). An event is retried for the retry window counted from its first
attempt; a retry that would fall beyond the window is not made: the event is
dead-lettered then, instead of after a pointless wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from callhub.backoff import FULL_JITTER, Backoff
from workers.forward.sender import AttemptResult

RETRY_BASE_S = 1.0
RETRY_CAP_S = 600.0


class RetryPolicy:
    def __init__(self, window_ms: int, *, base_s: float = RETRY_BASE_S,
                 cap_s: float = RETRY_CAP_S, rand: Callable[[], float] = random.random) -> None:
        self.window_ms = window_ms
        self._backoff = Backoff(base_s, cap_s, jitter=FULL_JITTER, rand=rand)

    def delay_s(self, attempt: int, result: AttemptResult) -> float:
        """The wait after failed attempt number ``attempt`` (1 for the first)."""
        if result.retry_after_s is not None:
            return min(result.retry_after_s, RETRY_CAP_S)
        return self._backoff.delay(attempt)

    def gives_up(self, first_attempt_ms: int, retry_at_ms: int) -> bool:
        """Whether a retry at ``retry_at_ms`` falls outside the event's window."""
        return retry_at_ms >= first_attempt_ms + self.window_ms
