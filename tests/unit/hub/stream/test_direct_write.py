"""Writes started by the dispatcher: done at once when the client keeps up,
finished (or failed, or cancelled) in the stream's task when it does not."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from callhub.event_filter import EventFilter
from hub.stream.direct_write import PendingSend, start_send
from hub.stream.subscriber import NOT_WRITING, Subscriber


class FakeSend:
    """An ASGI send that blocks while ``open`` is clear, like a server's flow control."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.sent: list[bytes] = []
        self.gave_up = 0

    async def __call__(self, message: Message) -> None:
        try:
            await self.open.wait()
        except asyncio.CancelledError:
            self.gave_up += 1
            raise
        self.sent.append(message["body"])


def live_subscriber(send: FakeSend) -> Subscriber:
    subscriber = Subscriber(EventFilter(), max_bytes=1000)
    subscriber.sender = send
    return subscriber


async def test_a_parked_live_subscriber_is_written_to_without_waking_its_task() -> None:
    send = FakeSend()
    subscriber = live_subscriber(send)
    subscriber.idle_ticks = 3
    waiter = subscriber.wait()
    subscriber.push(b"one")
    subscriber.push(b"two")
    assert send.sent == [b"one", b"two"]
    assert not waiter.done() and not subscriber.pending
    assert subscriber.idle_ticks == 0 and subscriber.write_ticks == NOT_WRITING


async def test_a_write_that_must_wait_is_handed_to_the_task_and_later_chunks_buffer() -> None:
    send = FakeSend()
    send.open.clear()
    subscriber = live_subscriber(send)
    waiter = subscriber.wait()
    subscriber.push(b"one")
    pending = waiter.result()
    assert isinstance(pending, PendingSend)
    assert subscriber.write_ticks == 0  # the watchdog sees a write under way
    subscriber.push(b"two")  # the task is not parked any more: buffered, in order
    assert subscriber.pending and send.sent == []
    send.open.set()
    await pending
    assert send.sent == [b"one"] and subscriber.take() == b"two"


async def test_a_catching_up_subscriber_only_buffers() -> None:
    send = FakeSend()
    subscriber = Subscriber(EventFilter(), max_bytes=1000)  # no sender yet
    subscriber.wait()
    subscriber.push(b"one")
    assert send.sent == [] and subscriber.take() == b"one"


async def test_an_error_in_the_send_is_raised_in_the_task() -> None:
    async def broken(message: Message) -> None:
        raise RuntimeError("the server refused")

    pending = start_send(broken, {"type": "http.response.body", "body": b"x"})
    assert pending is not None
    with pytest.raises(RuntimeError, match="refused"):
        await pending


async def test_cancelling_the_task_that_finishes_a_write_cancels_the_send() -> None:
    send = FakeSend()
    send.open.clear()
    pending = start_send(send, {"type": "http.response.body", "body": b"x"})
    assert pending is not None

    async def finish() -> None:
        await pending

    task = asyncio.create_task(finish())
    await asyncio.sleep(0)  # the task now waits on what the send waits on
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert send.gave_up == 1 and send.sent == []
