"""Hash reads for Get Call: the HGETALLs of concurrent requests share round trips.

Under load many Get Call requests are in flight at once. ``PipelinedHashReader``
sends them all down one dedicated connection (``hub.store._resp_link``: many
commands in flight, replies in order), which costs a few microseconds per read
where redis-py's pooled path costs tens (the numbers are in that module).

Read-your-writes holds: a read is written to Redis after its request started,
on a connection to the same server the workers commit to, so every commit
acknowledged before the request is in the reply.

``CoalescedHashReader`` is the pooled path: the reads asked for during one
turn of the event loop leave as one redis-py pipeline. ``PipelinedHashReader``
falls back to it, once and for good, if this redis-py's connections cannot be
taken over (their private stream attributes changed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from callhub.connections import RedisClient
from hub.store._resp_link import Fields, RedisLink

log = logging.getLogger("callhub.hash_reads")


class PipelinedHashReader:
    """HGETALL over one dedicated, pipelined connection of ``redis``'s pool.

    The connection is checked out of the client's pool once and never given
    back, so closing the client (``aclose``) closes it too. A lost connection
    fails the reads in flight (503s); the next read connects again.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        kwargs = redis.connection_pool.connection_kwargs
        self._timeout_s = float(kwargs.get("socket_timeout") or 10.0)
        self._connection: AbstractConnection | None = None
        self._link: RedisLink | None = None
        self._connecting: asyncio.Future[RedisLink | None] | None = None
        self._fallback: CoalescedHashReader | None = None

    def hgetall(self, key: str) -> Awaitable[Fields]:
        """The hash at ``key``; with the link open, its future itself (no
        coroutine of its own: one frame less to suspend and resume per read)."""
        link = self._link
        if link is not None and link.open:
            return link.hgetall(key.encode())
        return self._hgetall_connecting(key)

    async def _hgetall_connecting(self, key: str) -> Fields:
        if self._fallback is None:
            link = await self._connected()
            if link is not None:
                return await link.hgetall(key.encode())
        assert self._fallback is not None
        return await self._fallback.hgetall(key)

    @property
    def in_flight(self) -> int:
        return self._link.in_flight if self._link is not None else 0

    async def _connected(self) -> RedisLink | None:
        """The open link, connecting once for all the reads that wait for it
        (shielded: a read cancelled meanwhile does not cancel the others')."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, attempt: asyncio.Future[RedisLink | None]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved: each waiter got it already

    async def _connect(self) -> RedisLink | None:
        if self._connection is None:
            pool = self._redis.connection_pool
            self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        else:
            await self._connection.disconnect(nowait=True)  # the old transport, if any
            await self._connection.connect()  # type: ignore[no-untyped-call]
        writer = getattr(self._connection, "_writer", None)
        transport = getattr(writer, "transport", None)
        if not _can_adopt(transport) or not _drained(self._connection):
            log.warning("cannot take over redis-py's connection (redis-py changed?): Get Call "
                        "reads go through redis-py's pool instead, at a higher CPU cost")
            self._fallback = CoalescedHashReader(self._redis)
            connection, self._connection = self._connection, None
            await self._redis.connection_pool.release(connection)  # the fallback's to use
            return None
        link = RedisLink(self._timeout_s, self._lost)
        link.adopt(transport)  # type: ignore[arg-type]
        self._link = link
        return link

    def _lost(self, link: RedisLink) -> None:
        if self._link is link:
            self._link = None


def _can_adopt(transport: object) -> bool:
    """Duck-typed: uvloop's transports are not ``asyncio.Transport`` subclasses."""
    return all(hasattr(transport, name) for name in _TRANSPORT_METHODS)


_TRANSPORT_METHODS = ("get_protocol", "set_protocol", "write", "abort", "is_closing")


def _drained(connection: AbstractConnection) -> bool:
    """Whether redis-py's stream holds no unread bytes (none after a handshake)."""
    reader = getattr(connection, "_reader", None)
    buffer = getattr(reader, "_buffer", None)
    return buffer is not None and len(buffer) == 0


class CoalescedHashReader:
    """The reads asked for during one loop turn, as one redis-py pipeline."""

    def __init__(self, redis: RedisClient) -> None:
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
