"""Coalesced hash reads: concurrent reads share one pipeline, each gets its own
answer, a failure reaches every waiter, and a cancelled waiter harms nobody."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hub.hash_reads import CoalescedHashReader


class CountingRedis(fakeredis.aioredis.FakeRedis):  # type: ignore[misc]
    pipelines = 0

    def pipeline(self, *args: object, **kwargs: object) -> object:
        CountingRedis.pipelines += 1
        return super().pipeline(*args, **kwargs)


async def test_concurrent_reads_share_one_round_trip() -> None:
    redis = CountingRedis()
    for n in range(20):
        await redis.hset(f"h{n}", mapping={"n": str(n)})
    CountingRedis.pipelines = 0
    reader = CoalescedHashReader(redis)
    answers = await asyncio.gather(*(reader.hgetall(f"h{n}") for n in range(20)),
                                   reader.hgetall("missing"))
    assert answers == [{b"n": str(n).encode()} for n in range(20)] + [{}]
    assert CountingRedis.pipelines == 1
    assert await reader.hgetall("h3") == {b"n": b"3"}  # a lone read still works
    assert CountingRedis.pipelines == 2


async def test_a_failure_reaches_every_waiter() -> None:
    class Broken(fakeredis.aioredis.FakeRedis):  # type: ignore[misc]
        def pipeline(self, *args: object, **kwargs: object) -> object:
            raise RedisConnectionError("down")

    reader = CoalescedHashReader(Broken())
    results = await asyncio.gather(reader.hgetall("a"), reader.hgetall("b"),
                                   return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results)


async def test_a_cancelled_waiter_does_not_break_the_others() -> None:
    redis = fakeredis.aioredis.FakeRedis()
    await redis.hset("a", "k", "v")
    reader = CoalescedHashReader(redis)
    doomed = asyncio.create_task(reader.hgetall("a"))
    kept = asyncio.create_task(reader.hgetall("a"))
    await asyncio.sleep(0)  # both have asked; the flush is scheduled
    doomed.cancel()
    assert await kept == {b"k": b"v"}
    with pytest.raises(asyncio.CancelledError):
        await doomed
