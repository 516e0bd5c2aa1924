"""The naive peer for the fan-out benchmark: the SSE endpoint most Python users write.

A Starlette route answering with ``sse-starlette``'s ``EventSourceResponse``;
each client gets its own generator running a blocking ``XREAD`` loop on the
shard log (``callhub:{0}:log``), continuing from the last id it read (from
``$`` at first), and yields the entry's ``data`` as an event named by its
``type``. With ``?session_id=`` it skips other calls' entries itself. One
Redis connection per open stream (a blocking read holds its connection), so
the pool is made large.

One thing is not naive: redis-py 8 reads with a 5 s socket timeout by
default, and a 5 s blocking XREAD under load then fails with "Timeout reading
from ..." and ends the stream (at 10,000 idle streams nearly all of them
died that way). The socket timeout is set above the block time, as callhub's
shard reader does.

Run by ``bench/fanout.py`` as
``uvicorn bench.naive_app:create --factory`` with ``NAIVE_REDIS_URL`` set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

LOG_KEY = "callhub:{0}:log"
BLOCK_MS = 5000
COUNT = 512  # the same batch size as callhub's shard reader


def create() -> Starlette:
    redis = aioredis.Redis.from_url(
        os.environ.get("NAIVE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        max_connections=50_000,
        socket_timeout=BLOCK_MS / 1000 + 10,
    )

    async def events(request: Request) -> EventSourceResponse:
        session_id = request.query_params.get("session_id", "").encode()

        async def stream() -> AsyncIterator[dict[str, Any]]:
            last_id: bytes | str = "$"
            while True:
                reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = (
                    await redis.xread({LOG_KEY: last_id}, count=COUNT, block=BLOCK_MS)  # type: ignore[assignment]
                )
                for _key, entries in reply or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        if session_id and fields[b"session_id"] != session_id:
                            continue
                        yield {
                            "id": entry_id.decode(),
                            "event": fields[b"type"].decode(),
                            "data": fields[b"data"].decode(),
                        }

        return EventSourceResponse(stream())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()

    return Starlette(routes=[Route("/events", events)], lifespan=lifespan)
