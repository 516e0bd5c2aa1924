"""Dialog time (DialogClock, Pace): scaled by the speed, capped by the call's
maximum duration, and cut short by a stopping worker."""

from __future__ import annotations

import asyncio
import math
from typing import Literal

import pytest

from workers.dialog.clock import CallEnds, DialogClock, Pace


class ObservedEvent(asyncio.Event):
    """An asyncio.Event that says when something has started waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.awaited.set()
        return await super().wait()


async def test_dialog_time_is_scaled_capped_and_cut_short_by_a_stop() -> None:
    loop = asyncio.get_running_loop()
    pace = Pace(100.0)
    clock = DialogClock(pace, max_duration_s=10.0)
    started = loop.time()
    await clock.wait(2.0)  # 2 s of dialog time: 20 ms at 100x
    assert clock.elapsed_s == 2.0 and loop.time() - started >= 0.015
    with pytest.raises(CallEnds) as over:
        await clock.wait(60.0)  # only 8 s are left
    assert over.value.reason == "timeout" and clock.elapsed_s == 10.0

    stopping = ObservedEvent()
    slow = DialogClock(Pace(1.0, stopping), max_duration_s=7200.0)
    waiting = asyncio.create_task(slow.wait(3600.0))
    # The stop must cut a wait short, not be seen before the wait begins.
    await asyncio.wait_for(stopping.awaited.wait(), 5)
    assert not waiting.done()
    started = loop.time()
    slow.pace.stopping.set()
    with pytest.raises(CallEnds) as stopped:
        await asyncio.wait_for(waiting, 5)
    assert stopped.value.reason == "system_hangup" and loop.time() - started < 1.0
    assert Pace(math.inf).real_seconds(3600) == 0.0
    assert Pace(1000.0).real_timeout(2.0) == 1.0  # never below a loopback round trip
