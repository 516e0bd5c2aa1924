"""ClientWatch: the client going away is noticed without a task per stream."""

from __future__ import annotations

import asyncio

from hub.stream.client_watch import ClientWatch


class Connection:
    """A receive() shaped like uvicorn's: the request first, then it waits on
    an event until the connection is lost."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.requested = False
        self.lost = False

    async def receive(self) -> dict[str, object]:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.lost:
            await self.event.wait()
            self.event.clear()
        return {"type": "http.disconnect"}

    def lose(self) -> None:
        self.lost = True
        self.event.set()


async def test_the_client_leaving_is_reported_once() -> None:
    connection, left = Connection(), []
    ClientWatch(connection.receive, lambda: left.append(1))
    await asyncio.sleep(0)
    assert left == [] and connection.requested and len(connection.event._waiters) == 1
    connection.lose()
    for _ in range(3):
        await asyncio.sleep(0)
    assert left == [1]


async def test_cancelling_stops_listening_and_leaves_no_waiter() -> None:
    connection, left = Connection(), []
    watch = ClientWatch(connection.receive, lambda: left.append(1))
    await asyncio.sleep(0)
    watch.cancel()
    assert not connection.event._waiters
    connection.lose()
    await asyncio.sleep(0)
    assert left == []


async def test_a_failing_receive_counts_as_the_client_gone() -> None:
    async def broken() -> dict[str, object]:
        raise OSError("connection reset")

    left: list[int] = []
    ClientWatch(broken, lambda: left.append(1))
    assert left == [1]
