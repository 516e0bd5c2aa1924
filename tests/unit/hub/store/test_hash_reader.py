"""Hash reads: concurrent reads share one pipeline, each gets its own
answer, a failure reaches every waiter, a cancelled waiter harms nobody, and a
connection the pipelined reader cannot take over falls back to the pool."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hub.store.hash_reader import CoalescedHashReader, PipelinedHashReader


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


async def test_a_connection_that_cannot_be_taken_over_falls_back_to_the_pool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = fakeredis.aioredis.FakeRedis()  # its connections have no transport to adopt
    await redis.hset("a", "k", "v")
    reader = PipelinedHashReader(redis)
    answers = await asyncio.gather(reader.hgetall("a"), reader.hgetall("a"), reader.hgetall("b"))
    assert answers == [{b"k": b"v"}, {b"k": b"v"}, {}]
    assert await reader.hgetall("a") == {b"k": b"v"}
    assert [r.message for r in caplog.records].count(
        next(r.message for r in caplog.records if "cannot take over" in r.message)) == 1
