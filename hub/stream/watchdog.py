"""The replica's one watchdog over its event streams: write timeouts and pings.

Every write to a stream client must finish within the write timeout (a
half-open client is found by its stalled writes, DESIGN section 3), and an
idle stream gets a ping every ping interval. Doing either with a timer per
write or per wait (``asyncio.timeout``, ``call_later``) arms and cancels a
timer for every delivery: at 1,000 subscribers and 200 events/s that is
400,000 timers a second, a large share of the replica's CPU. Instead one task
ticks a few times per interval and ages two small counters on each
subscriber (``write_ticks``, ``idle_ticks``, kept by the stream around each
write): a write older than the timeout gets its stream cut off, a stream idle
for a ping interval gets its ping, written from here (``Subscriber.ping``)
without waking the stream's task, one frame shared by every stream pinged in
the tick. Per tick this is one pass over the subscribers, nothing per delivery.

Precision follows from the tick (a quarter of the shorter interval): a stalled
write is cut off within one tick after the write timeout, never sooner; an
idle stream is pinged within the last tick of its ping interval (0.75 to 1
interval after its last write at worst), so the heartbeat is never rarer than
configured.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Final

from hub.stream.dispatcher import Dispatcher
from hub.stream.frames import ping
from hub.stream.subscriber import NOT_WRITING

log = logging.getLogger("callhub.stream")

TICKS_PER_INTERVAL: Final = 4


class StreamWatchdog:
    def __init__(self, dispatcher: Dispatcher, *, ping_s: float, write_timeout_s: float) -> None:
        self._dispatcher = dispatcher
        self.tick_s = min(ping_s, write_timeout_s) / TICKS_PER_INTERVAL
        self._ping_ticks = max(1, round(ping_s / self.tick_s))
        self._write_ticks = math.ceil(write_timeout_s / self.tick_s - 1e-9)
        self.cut_off = 0  # streams ended for a stalled write, since start

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.tick()
            except Exception:  # a watchdog that dies quietly would leave writes unbounded
                log.exception("stream watchdog tick failed")

    def tick(self) -> None:
        """Age every subscriber by one tick; cut off stalled writes, ping idle streams."""
        ping_ticks, write_ticks = self._ping_ticks, self._write_ticks
        frame = b""
        for subscriber in self._dispatcher.subscribers():
            if subscriber.write_ticks != NOT_WRITING:
                subscriber.write_ticks += 1
                # After k ticks the write began more than (k - 1) ticks ago.
                if subscriber.write_ticks > write_ticks:
                    self.cut_off += 1
                    subscriber.cut_off()
            else:
                subscriber.idle_ticks += 1
                if subscriber.idle_ticks >= ping_ticks:
                    if not frame:  # one frame for every stream pinged this tick
                        # A parked stream has written everything dispatched to
                        # it, so the handed-over position is its own too.
                        frame = ping(self._dispatcher.cursor().encode())
                    subscriber.ping(frame)
