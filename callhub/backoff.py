"""Backoff: how long to wait before the next attempt, after attempts that failed.

The wait grows exponentially (``base_s``, then ``factor`` times more per
failure) so that a blip is retried at once and a long outage is not hammered.
It is capped at ``cap_s`` because an outage ends: whoever waits should be back
within about ``cap_s`` of its end, not after a pause that has doubled all
through it. And it is jittered, each wait drawn from a range around that
envelope, because a server's clients tend to lose it at the same moment (every
replica's shard readers at a failover, every worker's publisher, every tail of
a restarted hub): waits that were equal would bring them all back in one
burst, again and again, where spread ones arrive as a trickle.

``jitter`` is the range of multiples of the envelope a wait is drawn from,
uniformly: ``EQUAL_JITTER`` (0.5, 1) never waits longer than the envelope and
never less than half of it (the cap stays a promise, and a retry never spins);
``FULL_JITTER`` (0, 1) spreads most; (1, 1.2) treats the envelope as a floor
and adds up to 20 %, for a client whose server asked it to wait at least so
long (SSE's ``retry:``). Waits thus lie within ``[low·envelope, high·envelope]``,
so within ``[low·base_s, high·cap_s]``.

One class serves the hub's shard readers, the workers' publisher and the tail
client. redis-py's ``redis.backoff`` (``ExponentialWithJitterBackoff`` and its
kin) is the obvious candidate, a dependency already, but it fits none of them
as it stands: its factor is fixed at 2 and its first wait is already
``2·base``; it jitters downwards only, where the tail must never come back
sooner than the stream's ``retry:``; it draws from the ``random`` module with
no way to pass a source, which the tail's tests need; and ``base·2**failures``
raises OverflowError after about a thousand failures, which a tail retrying
for ever, every 30 s, reaches in under nine hours.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Final

FULL_JITTER: Final = (0.0, 1.0)
EQUAL_JITTER: Final = (0.5, 1.0)


class Backoff:
    """Jittered exponential backoff, capped.

    ``next_delay()`` is the wait after one more failure, ``reset()`` starts
    again from ``base_s`` (after a success); ``delay(attempt)`` is the wait
    before retry ``attempt`` (1, 2, …) for a caller that counts failures
    itself. ``rand`` draws from [0, 1]: a seam for tests.
    """

    def __init__(
        self, base_s: float, cap_s: float, *, factor: float = 2.0,
        jitter: tuple[float, float] = EQUAL_JITTER,
        rand: Callable[[], float] = random.random,
    ) -> None:
        low, high = jitter
        if not (0 <= base_s <= cap_s < math.inf and factor >= 1 and 0 <= low <= high):
            raise ValueError(f"not a backoff: base {base_s}, cap {cap_s}, factor {factor}, "
                             f"jitter {jitter}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.factor = factor
        self.jitter = jitter
        self.attempts = 0  # failures since the last reset
        self._rand = rand
        # Growth stops at the cap: past it, factor**n would only overflow.
        growing = base_s > 0 and factor > 1 and cap_s > base_s
        self._max_steps = math.ceil(math.log(cap_s / base_s, factor)) + 1 if growing else 0

    def envelope(self, attempt: int) -> float:
        """The un-jittered wait before retry ``attempt``: ``base_s·factor^(attempt-1)``, capped."""
        steps = min(max(attempt - 1, 0), self._max_steps)
        return min(self.cap_s, self.base_s * self.factor ** steps)

    def delay(self, attempt: int) -> float:
        """The wait before retry ``attempt`` (1, 2, …), jittered."""
        low, high = self.jitter
        return self.envelope(attempt) * (low + (high - low) * self._rand())

    def next_delay(self) -> float:
        """The wait after one more failure."""
        self.attempts += 1
        return self.delay(self.attempts)

    def reset(self) -> None:
        """After a success: the next wait is ``base_s`` (jittered) again."""
        self.attempts = 0
