"""A small Server-Sent Events client for the tests: frames as the wire has them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: bytes | None = None
    comment: bytes | None = None
    retry: int | None = None


def parse_frame(block: bytes) -> Frame:
    frame = Frame()
    for line in block.split(b"\n"):
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"":
            frame.comment = value
        elif name == b"id":
            frame.id = value.decode()
        elif name == b"event":
            frame.event = value.decode()
        elif name == b"data":
            frame.data = value if frame.data is None else frame.data + b"\n" + value
        elif name == b"retry":
            frame.retry = int(value)
    return frame


@dataclass
class EventStreamReader:
    """Reads frames from an open stream into ``frames``; remembers the last id."""

    response: httpx.Response
    frames: list[Frame] = field(default_factory=list)
    last_id: str | None = None
    ended: bool = False
    _buffer: bytes = b""

    async def pump(self) -> None:
        try:
            async for chunk in self.response.aiter_raw():
                self._buffer += chunk
                while b"\n\n" in self._buffer:
                    block, self._buffer = self._buffer.split(b"\n\n", 1)
                    frame = parse_frame(block)
                    if frame.id is not None:
                        self.last_id = frame.id
                    self.frames.append(frame)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            pass
        finally:
            self.ended = True

    @property
    def events(self) -> list[Frame]:
        return [f for f in self.frames if f.event is not None]


@contextlib.asynccontextmanager
async def subscribe(
    url: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
) -> AsyncIterator[EventStreamReader]:
    """Open a stream, read it in the background, and close it on exit."""
    own = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
    try:
        async with client.stream("GET", url, params=params, headers=headers) as response:
            reader = EventStreamReader(response)
            if response.status_code == 200:
                task = asyncio.create_task(reader.pump())
            else:
                await response.aread()
                task = None
            try:
                yield reader
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    finally:
        if own:
            await client.aclose()

