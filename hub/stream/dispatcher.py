"""The dispatcher: one replica's live events, routed in memory to subscribers.

Shard readers hand it each XREAD batch. Per event it decodes nothing but the
routing fields already in the stream entry, finds the matching filter groups
through an index (by session id, by dialog, or "all"), and builds the SSE frame
once, only if someone wants it. Subscribers with the same filter form one
group, whose frames are chosen and joined once per batch; each subscriber then
gets that one shared chunk: the cost of a burst grows with subscribers x
batches, not subscribers x events (DESIGN section 3).

Shard readers deliver through ``dispatch_soon``: their batches are routed at
once and written at the end of the loop turn, so the batches of every shard
that arrive in the same turn reach each subscriber as one chunk. With one shard
a reader that falls behind reads the backlog as one batch; with many, the
backlog is spread over the shards, and without this each shard's share would be
a write per subscriber of its own (at 1,000 subscribers on 6 shards that took
the steady-rate p99 from 23 ms to 115 ms, ``bench/fanout.py --shards``).

A busy replica lingers: when hand-overs took a large share of the replica's
recent time (``BUSY_SHARE`` of about the last ``DUTY_WINDOW_S``), the next one
waits ``CALLHUB_STREAM_LINGER``, so the events arriving meanwhile go out in the
same chunks. The share is a decaying sum of hand-over costs, not the last
hand-over against the gap before the next event: that gap is short whenever
events happen to come close together (half of them at 200 events/s from a
Poisson source, and every other one when the linger is a multiple of a steady
interval), so a replica at 20% CPU lingered on most events. Once lingering,
it goes on until the share falls below half of ``BUSY_SHARE``: lingering
itself lowers the share, and without the margin the replica would switch at
every window. At a moderate steady rate every event would otherwise arrive
alone and cost a write per subscriber; lingering makes batches grow with
load, so the cost per delivery falls toward the burst figure, while an idle
replica (the last hand-over long ago) still writes a lone event at once
(docs/performance.md).

Subscribers never slow the readers. A live subscriber whose task is parked
with nothing buffered gets its chunk written at once (``hub.stream.direct_write``: the
send starts here and, if the client is too slow to take it now, the
subscriber's task finishes it); otherwise the chunk is appended to a bounded
buffer that the subscriber's own task writes out. A subscriber whose buffer
overflows is closed (I5); it resumes from Redis with its cursor.

A subscriber (``hub.stream.subscriber``) also carries the little state the
replica's one watchdog needs (``hub.stream.watchdog``): how many watchdog ticks
its current write has taken and how long it has been idle, so no subscriber
needs a timer of its own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from typing import Final

from callhub.cursor import Cursor, parse_stream_id
from callhub.event_filter import EventFilter
from callhub.layout import ENTRY_DATA, ENTRY_DIALOG, ENTRY_SESSION_ID, ENTRY_TYPE
from callhub.types import Entry, StreamId
from hub.stream.frames import event_frame
from hub.stream.subscriber import (
    CLOSED_OVERFLOW,
    CLOSED_SHUTDOWN,
    CLOSED_STALLED,
    NOT_WRITING,
    Subscriber,
)

# Hand-overs that took this share of the replica's time over about the last
# DUTY_WINDOW_S mean it is busy: the next one lingers (until half this share).
BUSY_SHARE: Final = 0.25
DUTY_WINDOW_S: Final = 0.1


class FilterGroup:
    """Subscribers with the same filter: their frames are chosen and joined once."""

    __slots__ = ("filter", "members")

    def __init__(self, stream_filter: EventFilter) -> None:
        self.filter = stream_filter
        self.members: set[Subscriber] = set()


class Dispatcher:
    """Routes shard-log entries to subscribers; knows the replica's positions."""

    def __init__(self, shards: int, *, linger_s: float = 0.0) -> None:
        """``linger_s``: the longest a busy replica holds routed events back
        (0: a hand-over at the end of every loop turn that routed something)."""
        self.shards = shards
        self.linger_s = linger_s
        # Positions of what subscribers have been handed, and of what has been
        # routed (ahead of it while a flush is due): a frame's id is the
        # routed position after its entry; a new subscriber or a ping gets the
        # handed-over one, so it never claims frames still to come.
        self.positions: list[StreamId | None] = [None] * shards
        self._routed: list[StreamId | None] = [None] * shards
        self._pending: dict[FilterGroup, list[bytes]] = {}
        self._flush_due = False
        self._flush_timer: asyncio.TimerHandle | None = None
        # The share of the replica's time spent in hand-overs, decaying over
        # DUTY_WINDOW_S, as of _duty_at (perf_counter); and whether it lingers.
        self._duty = 0.0
        self._duty_at = 0.0
        self._lingering = False
        self.lingered = 0  # hand-overs that waited for more events
        self.ready = asyncio.Event()
        self._groups: dict[tuple[object, ...], FilterGroup] = {}
        self._index: dict[str, dict[bytes, set[FilterGroup]]] = {
            "session": {}, "dialog": {}, "all": {}}
        self.count = 0
        self.deliveries = 0
        self.slow_disconnects = 0  # streams cut off: buffer full or a write stalled
        self._reach_waiters: list[tuple[Cursor, asyncio.Future[None]]] = []

    # -- subscribers ------------------------------------------------------------

    def add(self, subscriber: Subscriber) -> Cursor:
        """Register ``subscriber`` and return the position it joins at.

        Everything at or before the returned cursor was dispatched before the
        subscriber existed; everything after it goes to its buffer. Nothing
        awaits in between, so the two are exact (the I4 seam).
        """
        self.flush()  # what was routed before it joined is not for it
        key = subscriber.filter.key()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = FilterGroup(subscriber.filter)
            kind, index_keys = subscriber.filter.index_keys()
            for index_key in index_keys:
                self._index[kind].setdefault(index_key, set()).add(group)
        if subscriber not in group.members:
            group.members.add(subscriber)
            self.count += 1
        return self.cursor()

    def remove(self, subscriber: Subscriber) -> None:
        key = subscriber.filter.key()
        group = self._groups.get(key)
        if group is None or subscriber not in group.members:
            return
        group.members.discard(subscriber)
        self.count -= 1
        if subscriber.closed in (CLOSED_OVERFLOW, CLOSED_STALLED):
            self.slow_disconnects += 1
        if not group.members:
            del self._groups[key]
            kind, index_keys = group.filter.index_keys()
            for index_key in index_keys:
                bucket = self._index[kind][index_key]
                bucket.discard(group)
                if not bucket:
                    del self._index[kind][index_key]

    def subscribers(self) -> Iterable[Subscriber]:
        for group in self._groups.values():
            yield from group.members

    def close_all(self, reason: str = CLOSED_SHUTDOWN) -> None:
        """End every stream now (shutdown): a stream stuck in a write is cut off,
        the others end at once."""
        for subscriber in list(self.subscribers()):
            if subscriber.write_ticks != NOT_WRITING:
                subscriber.cut_off()
            else:
                subscriber.close(reason)

    # -- positions --------------------------------------------------------------

    def cursor(self) -> Cursor:
        return Cursor(tuple(self.positions))

    def has_reached(self, target: Cursor) -> bool:
        """Whether every shard's position is at or past ``target``'s."""
        return all(want is None or (have is not None and have >= want)
                   for have, want in zip(self.positions, target.positions, strict=True))

    async def reach(self, target: Cursor, timeout_s: float) -> bool:
        """Wait until the readers are at or past ``target`` (False at the deadline).

        A client resuming on this replica may hold a cursor from another one
        whose readers were ahead (or from this one before a restart). Until this
        replica's readers pass it, the live events between here and there would
        reach the client a second time; so a resume waits for them first. The
        entries exist in Redis (another reader saw them), so the wait is short.
        """
        if self.has_reached(target):
            return True
        arrived = asyncio.get_running_loop().create_future()
        waiter = (target, arrived)
        self._reach_waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(arrived), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._reach_waiters:
                self._reach_waiters.remove(waiter)

    def start_at(self, shard: int, position: StreamId) -> None:
        """A reader's starting position; the dispatcher is ready once all have one."""
        self.positions[shard] = self._routed[shard] = position
        if all(p is not None for p in self.positions):
            self.ready.set()

    # -- routing ----------------------------------------------------------------

    def dispatch(self, shard: int, entries: Sequence[Entry]) -> None:
        """Route one XREAD batch of shard ``shard`` and hand it over now."""
        self.route(shard, entries)
        self.flush()

    def dispatch_soon(self, shard: int, entries: Sequence[Entry],
                      loop: asyncio.AbstractEventLoop) -> None:
        """Route one batch now and hand it over at the end of this loop turn,
        with every other batch routed in the same turn."""
        self.route(shard, entries)
        if not self._flush_due:
            self._flush_due = True
            delay = self._linger()
            if delay:
                self.lingered += 1
                self._flush_timer = loop.call_later(delay, self.flush)
            else:
                loop.call_soon(self.flush)

    def _linger(self) -> float:
        """How long the hand-over now due waits: 0 unless the replica is busy."""
        if not self.linger_s:
            return 0.0
        duty = self._busy_share(time.perf_counter())
        # Busy: wait the whole linger. A shorter wait would only add latency,
        # since an event joins only if it arrives within the wait, and at a
        # steady rate the next one is a whole interval away.
        self._lingering = duty >= (BUSY_SHARE / 2 if self._lingering else BUSY_SHARE)
        return self.linger_s if self._lingering else 0.0

    def _busy_share(self, now: float) -> float:
        """The share of the time up to ``now`` spent in hand-overs, decayed."""
        return self._duty * math.exp((self._duty_at - now) / DUTY_WINDOW_S)

    def route(self, shard: int, entries: Sequence[Entry]) -> None:
        """Build each entry's frame once and add it to the matching groups' chunks."""
        by_session = self._index["session"]
        by_dialog = self._index["dialog"]
        everyone = self._index["all"].get(b"", ())
        touched = self._pending
        routed = self._routed
        for entry_id, fields in entries:
            routed[shard] = parse_stream_id(entry_id)
            session_id = fields[ENTRY_SESSION_ID]
            dialog = fields[ENTRY_DIALOG]
            event_type = fields[ENTRY_TYPE]
            frame: bytes | None = None
            for groups in (by_session.get(session_id, ()), by_dialog.get(dialog, ()), everyone):
                for group in groups:
                    if not group.filter.matches(event_type, session_id, dialog):
                        continue
                    if frame is None:
                        frame = event_frame(Cursor(tuple(routed)).encode(), event_type,
                                            fields[ENTRY_DATA])
                    frames = touched.get(group)
                    if frames is None:
                        touched[group] = [frame]
                    else:
                        frames.append(frame)

    def flush(self) -> None:
        """Hand every routed chunk to its group's subscribers, one chunk each."""
        self._flush_due = False
        if self._flush_timer is not None:  # due later, but called now (a subscriber joins)
            self._flush_timer.cancel()
            self._flush_timer = None
        pending = self._pending
        if pending:
            self._pending = {}
            began = time.perf_counter()
            for group, frames in pending.items():
                chunk = frames[0] if len(frames) == 1 else b"".join(frames)
                for subscriber in group.members:
                    subscriber.push(chunk)
                self.deliveries += len(frames) * len(group.members)
            ended = time.perf_counter()
            self._duty = self._busy_share(ended) + (ended - began) / DUTY_WINDOW_S
            self._duty_at = ended
        self.positions[:] = self._routed
        if self._reach_waiters:
            for target, arrived in self._reach_waiters:
                if not arrived.done() and self.has_reached(target):
                    arrived.set_result(None)
