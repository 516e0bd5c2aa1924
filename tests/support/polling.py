"""Waiting on a condition with a deadline: the one way a test waits for something.

Tests wait on what they can observe (a line in a log, a key in Redis, a frame
on a stream), never a fixed sleep. Both faces share one contract, kept in
``_Poll``:

- ``condition()`` is called until it returns something truthy, which is
  returned;
- an ``AssertionError`` from the condition fails the wait at once (the
  condition found something wrong, not "not yet");
- any other exception counts as "not yet" (a server still starting refuses
  connections); the last one is chained to the failure, so it is not lost;
- at the deadline the wait fails with an ``AssertionError`` that names
  ``what`` and the timeout.

``wait_until`` blocks between attempts; ``async_wait_until`` awaits, and can
run a blocking condition in a thread (``in_thread=True``) so the event loop
(an in-process hub, a stream reader) keeps running while it polls. Its
condition may also return an awaitable, which is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_S = 10.0
INTERVAL_S = 0.01


@dataclass
class _Outcome:
    """One attempt: what the condition returned, or what it raised."""

    value: object = None
    error: Exception | None = None


@dataclass
class _Poll:
    """The deadline and the verdict on each attempt: the logic both faces share."""

    condition: object
    timeout: float
    what: str
    deadline: float = field(init=False)
    last_error: Exception | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def done(self, outcome: _Outcome) -> bool:
        """True when ``outcome`` satisfies the wait; False to try again; raises at the deadline."""
        if outcome.error is None and outcome.value:
            return True
        if isinstance(outcome.error, AssertionError):
            raise outcome.error
        if outcome.error is not None:
            self.last_error = outcome.error
        if time.monotonic() > self.deadline:
            raise AssertionError(
                f"timed out after {self.timeout}s waiting for {self.what or self.condition}"
            ) from self.last_error
        return False


def wait_until(
    condition: Callable[[], T], *, timeout: float = TIMEOUT_S, what: str = "",
    interval: float = INTERVAL_S,
) -> T:
    """Call ``condition`` until it is truthy (blocking); its value, or an AssertionError."""
    poll = _Poll(condition, timeout, what)
    while True:
        try:
            outcome = _Outcome(value=condition())
        except Exception as error:
            outcome = _Outcome(error=error)
        if poll.done(outcome):
            return outcome.value  # type: ignore[return-value]
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], T | Awaitable[T]], *, timeout: float = TIMEOUT_S, what: str = "",
    interval: float = INTERVAL_S, in_thread: bool = False,
) -> T:
    """``wait_until`` for a test running in an event loop: awaits between attempts.

    ``in_thread``: the condition blocks (a Redis or HTTP call with a blocking
    client), so each attempt runs in a worker thread.
    """
    poll = _Poll(condition, timeout, what)
    while True:
        try:
            value = await asyncio.to_thread(condition) if in_thread else condition()
            if inspect.isawaitable(value):
                value = await value
            outcome = _Outcome(value=value)
        except Exception as error:
            outcome = _Outcome(error=error)
        if poll.done(outcome):
            return outcome.value  # type: ignore[return-value]
        await asyncio.sleep(interval)
