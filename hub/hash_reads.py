"""Coalesced hash reads: the HGETALLs of concurrent requests share a round trip.

Under load many Get Call requests are in flight at once; each would otherwise
borrow a pooled connection, write one command and wake once for its reply.
``CoalescedHashReader`` gathers the reads asked for during one turn of the
event loop and sends them as one pipeline, so the cost per request shrinks as
concurrency grows, while a lone request still costs one round trip.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis


class CoalescedHashReader:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[str, asyncio.Future[dict[bytes, bytes]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[bytes, bytes]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((key, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._read(batch))
        self._tasks.add(task)  # held until done: a task nobody references can vanish
        task.add_done_callback(self._tasks.discard)

    async def _read(self, batch: list[tuple[str, asyncio.Future[dict[bytes, bytes]]]]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, _ in batch:
                pipe.hgetall(key)
            replies = await pipe.execute()
        except Exception as error:  # every waiter gets the failure (e.g. Redis is down)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(reply)
