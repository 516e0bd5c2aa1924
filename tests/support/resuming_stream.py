"""An EventSource-like client through a load balancer, and the truth to hold it to.

The client follows ``GET /v1/calls/events``; when its stream breaks (a replica
killed, Redis gone) it reconnects at once with the last id it saw as
``Last-Event-ID``, as a browser would (without the 3 s wait). It keeps each
event's (session id, seq).

The truth is the API's own record: for every call whose ``call_started`` the
client received, ``GET /v1/calls/{id}/events`` (all pages) lists what Redis
stores; the client must have each of those events once, no other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import msgspec

from tests.support.polling import async_wait_until
from tests.support.sse import parse_frame


class _Routing(msgspec.Struct):
    type: str
    session_id: str
    seq: int


_decode = msgspec.json.Decoder(_Routing).decode


@dataclass
class ResumingStream:
    url: str
    name: str
    received: list[tuple[str, int]] = field(default_factory=list)
    started: set[str] = field(default_factory=set)
    last_id: str | None = None
    connections: int = 0
    drops: int = 0  # streams that broke (ended without the client leaving)
    refused: int = 0  # attempts that got no stream
    connected: bool = False
    done: bool = False

    async def run(self, http: httpx.AsyncClient) -> None:
        failures = 0
        while not self.done:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            before = len(self.received)
            try:
                async with http.stream("GET", f"{self.url}/v1/calls/events",
                                       headers=headers) as response:
                    if response.status_code != 200:
                        await response.aread()
                        self.refused += 1
                    else:
                        self.connections += 1
                        self.connected = True
                        await self._read(response)
                        if not self.done:
                            self.drops += 1
            except httpx.TransportError:
                if self.connected:
                    self.drops += 1
                else:
                    self.refused += 1
            finally:
                self.connected = False
            failures = 0 if len(self.received) > before else failures + 1
            if not self.done and failures:
                await asyncio.sleep(min(0.1 * failures, 1.0))

    async def _read(self, response: httpx.Response) -> None:
        buffer = b""
        async for chunk in response.aiter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                frame = parse_frame(block)
                if frame.event is not None and frame.data is not None:
                    event = _decode(frame.data)
                    self.received.append((event.session_id, event.seq))
                    if event.type == "call_started":
                        self.started.add(event.session_id)
                if frame.id:
                    self.last_id = frame.id
            if self.done:
                return


@contextlib.asynccontextmanager
async def following(url: str, count: int) -> AsyncIterator[list[ResumingStream]]:
    """``count`` clients following the stream in the background until the block ends."""
    clients = [ResumingStream(url, f"client-{n}") for n in range(count)]
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http:
        tasks = [asyncio.create_task(client.run(http)) for client in clients]
        try:
            yield clients
        finally:
            for client in clients:
                client.done = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def stored_seqs(http: httpx.AsyncClient, url: str, session_id: str) -> tuple[list[int], bool]:
    """A call's stored events' seqs (every page), and whether it has ended."""
    seqs: list[int] = []
    params: dict[str, str] = {"page_size": "1000"}
    while True:
        response = await http.get(f"{url}/v1/calls/{session_id}/events", params=params)
        response.raise_for_status()
        page = response.json()
        seqs += [event["seq"] for event in page["events"]]
        if not page["has_more"]:
            return seqs, page["ended"]
        params["after"] = page["next_after"]


@dataclass
class Comparison:
    calls: int = 0  # (client, call) pairs compared
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    gaps: int = 0  # stored calls whose seqs are not consecutive (an acknowledged commit lost)
    unfinished: set[str] = field(default_factory=set)  # calls stored without their end

    def add(self, other: Comparison) -> None:
        self.calls += other.calls
        self.events += other.events
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.gaps += other.gaps
        self.unfinished |= other.unfinished

    def describe(self) -> str:
        return (f"calls compared {self.calls} (over all clients), events {self.events}, "
                f"lost {self.lost}, duplicated {self.duplicated}, gaps {self.gaps}, "
                f"calls not ended {len(self.unfinished)}")


async def compare(http: httpx.AsyncClient, url: str, client: ResumingStream,
                  truth: dict[str, tuple[list[int], bool]]) -> Comparison:
    """The client against what is stored, for every call it saw start. Called once
    the workers stopped, when nothing changes any more: a call not ended then (one
    a worker gave up) is compared as it is, and named in ``unfinished``. ``truth``
    caches the stored records across clients."""
    result = Comparison()
    counts = Counter(client.received)
    for session_id in sorted(client.started):
        if session_id not in truth:
            truth[session_id] = await stored_seqs(http, url, session_id)
        seqs, ended = truth[session_id]
        if not ended:
            result.unfinished.add(session_id)
        result.calls += 1
        result.gaps += seqs != list(range(seqs[0], seqs[0] + len(seqs))) if seqs else 1
        result.events += len(seqs)
        result.lost += sum(1 for seq in seqs if counts[(session_id, seq)] == 0)
        result.duplicated += sum(counts[(session_id, seq)] - 1 for seq in seqs
                                 if counts[(session_id, seq)] > 1)
        result.duplicated += sum(n for (sid, seq), n in counts.items()
                                 if sid == session_id and seq not in seqs)
    return result


async def settle(url: str, clients: list[ResumingStream], timeout: float = 60) -> Comparison:
    """Once the workers stopped: wait until every client holds every stored event
    of the calls it saw start (or the deadline), and return the figures over all
    clients then. Lost or duplicated events show in them; the caller asserts."""
    truth: dict[str, tuple[list[int], bool]] = {}
    latest = Comparison()
    async with httpx.AsyncClient(timeout=10) as http:
        async def complete() -> bool:
            nonlocal latest
            latest = Comparison()
            for client in clients:
                latest.add(await compare(http, url, client, truth))
            return latest.lost == 0
        with contextlib.suppress(AssertionError):  # the deadline: the figures say the rest
            await async_wait_until(complete, timeout=timeout, interval=1,
                                   what="every client to hold every stored event")
    return latest
