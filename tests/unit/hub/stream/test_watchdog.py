"""The replica's stream watchdog: stalled writes are cut off, idle streams pinged,
never sooner than configured; busy streams are left alone."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from callhub.event_filter import EventFilter
from hub.stream.direct_write import PendingSend
from hub.stream.dispatcher import Dispatcher
from hub.stream.frames import ping
from hub.stream.subscriber import (
    CLOSED_OVERFLOW,
    CLOSED_STALLED,
    NOT_WRITING,
    Subscriber,
)
from hub.stream.watchdog import StreamWatchdog


async def hang() -> None:
    """Stands in for a send that never returns (a client that does not read)."""
    await asyncio.Event().wait()


def watched(**timing: float) -> tuple[Dispatcher, StreamWatchdog, Subscriber]:
    dispatcher = Dispatcher(1)
    subscriber = Subscriber(EventFilter(), max_bytes=100)
    dispatcher.add(subscriber)
    return dispatcher, StreamWatchdog(dispatcher, **timing), subscriber


async def test_a_write_longer_than_the_timeout_is_cut_off_and_its_task_cancelled() -> None:
    _, watchdog, subscriber = watched(ping_s=15, write_timeout_s=10)
    assert watchdog.tick_s == 2.5
    subscriber.task = asyncio.create_task(hang())
    subscriber.write_ticks = 0
    for _ in range(4):  # 4 ticks: the write may have begun just before the first
        watchdog.tick()
    assert subscriber.closed is None and not subscriber.task.cancelling()
    watchdog.tick()  # 5 ticks: it has certainly taken more than 10 s
    assert subscriber.closed == CLOSED_STALLED and subscriber.task.cancelling() == 1
    assert subscriber.write_ticks == NOT_WRITING
    for _ in range(10):
        watchdog.tick()
    assert subscriber.task.cancelling() == 1  # cancelled once, not every tick
    assert watchdog.cut_off == 1
    await asyncio.gather(subscriber.task, return_exceptions=True)


async def test_a_stream_closed_while_stuck_in_a_write_is_still_cut_off() -> None:
    _, watchdog, subscriber = watched(ping_s=1, write_timeout_s=1)
    subscriber.task = asyncio.create_task(hang())
    subscriber.write_ticks = 0
    subscriber.push(b"x" * 200)  # overflows while the write hangs
    assert subscriber.closed == CLOSED_OVERFLOW
    for _ in range(5):
        watchdog.tick()
    assert subscriber.closed == CLOSED_STALLED and subscriber.task.cancelling() == 1
    await asyncio.gather(subscriber.task, return_exceptions=True)


class Client:
    """A send that takes every write at once (``slow``: the first write waits)."""

    def __init__(self, *, slow: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.slow = slow

    async def send(self, message: Message) -> None:
        if self.slow:
            self.slow = False
            await asyncio.sleep(0)
        self.bodies.append(message["body"])


async def test_an_idle_stream_is_pinged_within_the_interval_without_waking_its_task() -> None:
    dispatcher, watchdog, subscriber = watched(ping_s=2, write_timeout_s=10)
    dispatcher.start_at(0, (5, 0))
    client = Client()
    subscriber.sender = client.send
    waiter = subscriber.wait()
    for _ in range(3):
        watchdog.tick()
    assert client.bodies == []
    watchdog.tick()  # 4 ticks of 0.5 s: between 1.5 and 2 s idle
    assert client.bodies == [ping(dispatcher.cursor().encode())]
    assert not waiter.done() and subscriber.idle_ticks == 0
    for _ in range(4):
        watchdog.tick()
    assert len(client.bodies) == 2  # and again one interval later


async def test_a_ping_the_client_is_slow_to_take_is_finished_by_the_task_watched() -> None:
    _, watchdog, subscriber = watched(ping_s=2, write_timeout_s=10)
    client = Client(slow=True)
    subscriber.sender = client.send
    waiter = subscriber.wait()
    for _ in range(4):
        watchdog.tick()
    pending = waiter.result()
    assert type(pending) is PendingSend and subscriber.write_ticks == 0
    await pending
    assert client.bodies == [ping(Dispatcher(1).cursor().encode())]


async def test_a_stream_that_is_not_parked_is_not_pinged() -> None:
    _, watchdog, subscriber = watched(ping_s=2, write_timeout_s=10)
    client = Client()
    subscriber.sender = client.send  # live, but its task is busy (not in wait())
    for _ in range(8):
        watchdog.tick()
    assert client.bodies == []


async def test_writes_keep_a_stream_from_being_pinged_or_cut_off() -> None:
    _, watchdog, subscriber = watched(ping_s=2, write_timeout_s=2)
    for _ in range(20):
        waiter = subscriber.wait()
        subscriber.write_ticks = NOT_WRITING  # each tick, a write began and ended
        subscriber.idle_ticks = 0
        watchdog.tick()
        assert not waiter.done()
        subscriber.push(b"x")  # wakes it: data, not a ping
        assert waiter.result() is None
        subscriber.take()
    assert subscriber.closed is None


def test_shutdown_cuts_off_a_stream_stuck_in_a_write_and_closes_the_rest() -> None:
    dispatcher = Dispatcher(1)
    writing, idle = (Subscriber(EventFilter(), max_bytes=100) for _ in range(2))
    for s in (writing, idle):
        dispatcher.add(s)
    writing.write_ticks = 3
    dispatcher.close_all()
    assert writing.closed == CLOSED_STALLED and idle.closed == "shutdown"
