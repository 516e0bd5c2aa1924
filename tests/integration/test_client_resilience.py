"""``callhub.client`` through the real nginx of deploy/nginx.conf in front of two
``callhub serve`` replicas: each replica SIGKILLed in turn and Redis restarted
(AOF) while a client follows the stream. The iterator yields every committed
matching event exactly once, in per-call order, bytes as committed."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.client import CallhubClient, Delivery, RetryPolicy
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from tests.support.nginx import start_nginx
from tests.support.polling import async_wait_until
from tests.support.processes import HubProcess, start_hub
from tests.support.redis_servers import RedisServer
from tests.support.strategies import call_started, dtmf, terminated, transition
from workers.commit.publisher import CallPublisher

HUB_ENV = {"CALLHUB_PING_INTERVAL": "300ms"}


def calls(prefix: str, count: int) -> list[ev.Event]:
    events: list[ev.Event] = []
    for n in range(count):
        sid = f"{prefix}-{n}"
        events += [call_started(sid, dialog="helpdesk" if n % 2 else "billing"),
                   transition(sid, 2, "menu", "greeting"), dtmf(sid, 3, "4"), terminated(sid, 4)]
    return events


async def commit(redis_url: str, events: list[ev.Event]) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        outcomes = await CallPublisher(client, Settings(redis_url=redis_url)).commit_many(events)
        assert all(outcome.stored for outcome in outcomes)
    finally:
        await client.aclose()


class Connections:
    """The stream's listener: counts its connections and keeps why it retried."""

    def __init__(self) -> None:
        self.count = 0
        self.retries: list[str] = []

    def connected(self, url: str, resumed_from: str, first: bool) -> None:
        self.count += 1

    def retrying(self, reason: str, delay_s: float, failures: int,
                 max_retries: int | None) -> None:
        self.retries.append(reason)


def ready(hub: HubProcess) -> bool:
    return httpx.get(f"{hub.url}/readyz", timeout=2).status_code == 200


async def test_a_client_through_nginx_gets_everything_once_across_kills_and_a_redis_restart(
    durable_redis: RedisServer, tmp_path: Path,
) -> None:
    url = durable_redis.url
    hubs = [await asyncio.to_thread(start_hub, url, env=HUB_ENV, log_dir=tmp_path)
            for _ in range(2)]
    nginx = await asyncio.to_thread(start_nginx, tmp_path / "nginx",
                                    [h.url.removeprefix("http://") for h in hubs])
    got: list[Delivery] = []
    policy = RetryPolicy(idle_timeout_s=5.0, jitter=lambda: 0.0)
    connections = Connections()

    async def follow() -> None:
        async with CallhubClient(nginx.url) as hub:
            async for delivery in hub.events(event_types="call_started,dtmf_received,"
                                             "call_terminated", retry=policy,
                                             listener=connections).deliveries():
                got.append(delivery)

    follower = asyncio.create_task(follow())
    expected = 0

    async def phase(prefix: str) -> None:
        nonlocal expected
        await commit(url, calls(prefix, 10))
        expected += 30
        await async_wait_until(lambda: len(got) >= expected, timeout=40,
                               what=f"the client to receive the {prefix} calls")

    try:
        await async_wait_until(lambda: connections.count, timeout=10,
                               what="the client to connect through nginx")
        await phase("before")
        for index in (0, 1):  # SIGKILL each replica in turn; the stream is on one of them
            victim = hubs[index]
            victim.process.kill()
            victim.process.wait(timeout=10)
            await phase(f"killed-{index}")
            port = int(victim.url.rsplit(":", 1)[1])
            hubs[index] = await asyncio.to_thread(start_hub, url, env=HUB_ENV, port=port,
                                                  log_dir=tmp_path)
        durable_redis.stop()  # SIGTERM: redis-server fsyncs its AOF and exits
        await async_wait_until(lambda: not any(map(ready, hubs)), timeout=20, in_thread=True,
                               what="the replicas to see Redis gone")
        await asyncio.to_thread(durable_redis.restart)
        await async_wait_until(lambda: all(map(ready, hubs)), timeout=20, in_thread=True,
                               what="the replicas to see Redis back")
        await phase("after-redis")
    finally:
        follower.cancel()
        nginx.stop()
        for hub in hubs:
            hub.stop()
    truth_client = durable_redis.client()
    try:
        truth = [fields[b"data"] for _, fields in truth_client.xrange(Keyspace().log(0))
                 if fields[b"type"] in (b"call_started", b"dtmf_received", b"call_terminated")]
    finally:
        truth_client.close()
    received = [delivery.data for delivery in got]
    assert len(truth) == 120
    assert not [data for data, n in Counter(received).items() if n > 1], "duplicates"
    assert received == truth  # one shard: the log's order, so per-call order too, every byte
    assert all(isinstance(d.item, ev.Event) and d.cursor for d in got)
    assert connections.count >= 2, connections.retries  # it did lose its stream and resume
