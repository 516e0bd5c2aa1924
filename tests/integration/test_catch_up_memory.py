"""A client that does not read costs a bounded amount of memory, however far back it starts.

Non-reading clients (a tiny receive buffer, never read) that ask for the history
of 200 active calls, or resume from the log's beginning: the replica's RSS grows
by less than one subscriber buffer per stream. (Before the history's chunks were
bounded together, 200 calls held 4,096 entries per stream: about 9 MB each.)
"""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import redis.asyncio as aioredis

from callhub.cursor import Cursor
from callhub.settings import Settings, load_settings
from tests.support.polling import wait_until
from tests.support.processes import CallhubProcess, start_hub
from tests.support.strategies import action, call_started
from workers.commit.publisher import CallPublisher

CALLS, EVENTS_PER_CALL, STREAMS = 200, 50, 5
BUFFER = 4 * 1024 * 1024  # CALLHUB_SUBSCRIBER_BUFFER's default


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def _fill(redis_url: str, settings: Settings) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    publisher = CallPublisher(redis, settings)
    for call in range(CALLS):
        sid = f"c-{call}"
        await publisher.commit_many([call_started(sid), *(
            action(sid, seq, "set_variable", {"note": "x" * 1000})
            for seq in range(2, EVENTS_PER_CALL + 1))])
    await redis.aclose()


def _subscribers(hub: CallhubProcess) -> float:
    text = httpx.get(f"{hub.url}/metrics", timeout=5).text
    line = next(line for line in text.splitlines()
                if line.startswith("callhub_stream_subscribers"))
    return float(line.split()[-1])


class _Settling:
    """RSS sampled at each call: settled once four readings in a row (a second
    apart, at the poll's interval) agree within 1% — the streams' writes have
    stopped, held back by the clients that do not read."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.readings: list[int] = []

    def __call__(self) -> int | None:
        self.readings.append(_rss(self.pid))
        last = self.readings[-4:]
        if len(last) == 4 and max(last) - min(last) <= max(last) // 100:
            return last[-1]
        return None


@pytest.mark.parametrize("query", ["include_history=true",
                                   f"last_event_id={Cursor(((0, 1),)).encode()}"],
                         ids=["history", "resume"])
def test_non_reading_streams_cost_less_than_a_buffer_each(redis_url: str, query: str) -> None:
    asyncio.run(_fill(redis_url, load_settings({"CALLHUB_REDIS_URL": redis_url})))
    hub = start_hub(redis_url)
    sockets: list[socket.socket] = []
    try:
        pid = hub.process.pid
        before = _rss(pid)
        port = int(hub.url.rsplit(":", 1)[1])
        for _ in range(STREAMS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET /v1/calls/events?{query} HTTP/1.1\r\n"
                         "Host: localhost\r\n\r\n".encode())
            sockets.append(sock)
        wait_until(lambda: _subscribers(hub) == STREAMS, what="every stream to be open")
        settled = wait_until(_Settling(pid), timeout=30, interval=0.33,
                             what="the replica's memory to settle")
        grown = settled - before
        assert grown < STREAMS * BUFFER, f"{grown / STREAMS / 2**20:.1f} MiB per stream"
        print(f"{query.split('=')[0]}: {grown / STREAMS / 2**20:.2f} MiB per non-reading stream")
    finally:
        for sock in sockets:
            sock.close()
        hub.stop()
