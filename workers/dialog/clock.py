"""Dialog time: how long a call's pauses take, scaled by a speed factor.

A call spends its life waiting: for the caller to start talking, for words to
be spoken, for a prompt to play, on hold. Every such wait goes through the
call's ``DialogClock``, which

- counts it in *dialog seconds* (what the call would take for real), so the
  maximum call duration and the dialog's timeouts are decided on dialog time,
  the same at any speed and under any load (a seeded simulation is repeatable);
- sleeps ``seconds / speed`` of real time (no sleep at all at infinite speed);
- ends the call when the worker is stopping (``system_hangup``) or when the
  call has reached its maximum duration (``timeout``), by raising ``CallEnds``.

Event timestamps stay wall-clock times: what a dashboard shows is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from callhub.events import TerminationReason


class CallEnds(Exception):
    """The call is over, for ``reason``: unwinds the dialog to its ``call_terminated``."""

    def __init__(self, reason: TerminationReason) -> None:
        super().__init__(reason)
        self.reason: TerminationReason = reason


class Pace:
    """The speed of dialog time for a whole worker, and its stop signal."""

    def __init__(self, speed: float = 1.0, stopping: asyncio.Event | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be more than 0, got {speed}")
        self.speed = speed
        self.stopping = stopping if stopping is not None else asyncio.Event()

    def real_seconds(self, dialog_seconds: float) -> float:
        """Real seconds that ``dialog_seconds`` of dialog time take."""
        return 0.0 if math.isinf(self.speed) else dialog_seconds / self.speed

    def real_timeout(self, dialog_seconds: float, *, floor_s: float = 1.0) -> float:
        """A network timeout scaled like dialog time, but never below ``floor_s``.

        An HTTP round trip on loopback does not get faster with the speed
        factor: a floor keeps a hook from timing out only because of it.
        """
        return max(self.real_seconds(dialog_seconds), floor_s)


class DialogClock:
    """One call's dialog time: elapsed seconds, its limit, and the waits."""

    def __init__(self, pace: Pace, max_duration_s: float) -> None:
        self.pace = pace
        self.max_duration_s = max_duration_s
        self.elapsed_s = 0.0

    def check(self) -> None:
        """Raise ``CallEnds`` if the worker is stopping or the call is out of time."""
        if self.pace.stopping.is_set():
            raise CallEnds("system_hangup")
        if self.elapsed_s >= self.max_duration_s:
            raise CallEnds("timeout")

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` of dialog time pass (cut short by a stop or the time limit)."""
        self.check()
        step = min(max(seconds, 0.0), self.max_duration_s - self.elapsed_s)
        real = self.pace.real_seconds(step)
        if real > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pace.stopping.wait(), real)
        else:
            await asyncio.sleep(0)  # let other calls run, even at infinite speed
        if self.pace.stopping.is_set():
            raise CallEnds("system_hangup")
        self.elapsed_s += step
        if step < seconds:
            raise CallEnds("timeout")

    def advance(self, seconds: float) -> None:
        """Count time that passed outside ``wait`` (a hook's round trip)."""
        self.elapsed_s += max(seconds, 0.0)
