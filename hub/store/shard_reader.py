"""ShardReader: the one blocking XREAD loop per shard log in a replica.

It holds a dedicated connection (a blocking read must never borrow from the
pool that serves Get/List) and always continues from the last id it read,
never from ``$``: an XREAD that restarts from ``$`` after an empty block or a
reconnect loses whatever was committed in between. When Redis goes away it
retries with backoff from the same position, so subscribers stay connected
and lose nothing; any other failure is logged and the loop goes on (a reader
that dies quietly would leave every subscriber starving).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException as RedisClusterError
from redis.exceptions import ResponseError

from callhub.backoff import Backoff
from callhub.connections import node_url_for
from callhub.cursor import format_stream_id, parse_stream_id
from callhub.settings import Settings
from callhub.types import Entry, StreamId
from hub.errors import REDIS_ERRORS
from hub.metrics import HubMetrics

log = logging.getLogger("callhub.reader")

BLOCK_MS: Final = 5000
COUNT: Final = 512
# Backoff between reconnects: short enough that a reader is back within about
# two seconds of a failover's end (or a Redis restart), long enough not to spin;
# jittered so that every replica's readers do not return in one burst.
RETRY_DELAY_S: Final = 0.1
MAX_RETRY_DELAY_S: Final = 2.0


class EntrySink(Protocol):
    """Where a reader hands what it reads (the replica's dispatcher): the seam
    between Redis and the stream engine, so the store needs nothing of it."""

    def start_at(self, shard: int, position: StreamId) -> None: ...

    def dispatch_soon(self, shard: int, entries: Sequence[Entry],
                      loop: asyncio.AbstractEventLoop) -> None: ...


class ShardReader:
    def __init__(self, settings: Settings, shard: int, dispatcher: EntrySink,
                 metrics: HubMetrics | None = None, *, cluster: RedisCluster | None = None
                 ) -> None:
        """``cluster``: the replica's cluster client, which knows every node and
        so can say which one serves this shard after a failover."""
        self._settings = settings
        self._cluster = cluster
        self._shard = self.shard = shard
        self._metrics = metrics
        self.events_read = 0
        self.lag_s = 0.0  # age of the newest entry of the last batch, when handed on
        self._key = settings.keyspace.log(shard)
        self._dispatcher = dispatcher
        self.position: StreamId | None = None
        self.reconnects = 0
        self._stopping = False
        self._client: aioredis.Redis | None = None

    async def _connect(self) -> aioredis.Redis:
        """A dedicated connection to the node that holds this shard's log: the
        one Redis, or on a cluster the master that serves the log's slot now."""
        url = self._settings.redis_url
        if self._cluster is not None:
            url = await node_url_for(self._settings, self._cluster, self._key)
        return aioredis.Redis.from_url(
            url,
            decode_responses=False,
            single_connection_client=True,
            # The loop below retries, from its own position and with backoff;
            # redis-py retrying underneath would also re-block after stop().
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=5,
            socket_timeout=BLOCK_MS / 1000 + 10,
        )

    async def stop(self, task: asyncio.Task[None]) -> None:
        """End the loop, even from inside a blocking read.

        Cancelling alone is not enough: on Python 3.11 redis-py can swallow a
        cancellation that lands inside a command, and the loop would block on
        its next read. So the stop flag is set, the task cancelled and the
        connection closed, again every 100 ms until the task is done.
        """
        self._stopping = True
        for _ in range(BLOCK_MS // 100 + 10):
            if task.done():
                return
            task.cancel()
            connection = self._client.connection if self._client is not None else None
            if connection is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1):
                        await connection.disconnect(nowait=True)
            await asyncio.wait({task}, timeout=0.1)

    async def run(self) -> None:
        client: aioredis.Redis | None = None
        backoff = Backoff(RETRY_DELAY_S, MAX_RETRY_DELAY_S)
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                try:
                    if client is None:
                        client = self._client = await self._connect()
                    if self.position is None:
                        self.position = await self._last_id(client)
                        self._dispatcher.start_at(self._shard, self.position)
                    reply: list[tuple[bytes, list[Entry]]] = await client.xread(  # type: ignore[assignment]
                        {self._key: format_stream_id(self.position)}, count=COUNT, block=BLOCK_MS
                    )
                    backoff.reset()
                except (*REDIS_ERRORS, RedisClusterError, ResponseError) as error:
                    if self._stopping:
                        return
                    if self._cluster is not None and client is not None:
                        # The slot moved or its master failed over: find its
                        # node again (MOVED, CLUSTERDOWN, a lost connection).
                        await client.aclose()
                        client = self._client = None
                    self.reconnects += 1
                    delay = backoff.next_delay()
                    log.warning("shard %d reader lost Redis (%s); retrying in %.1fs",
                                self._shard, type(error).__name__, delay)
                    await asyncio.sleep(delay)
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if self._stopping:
                        return  # stop() closed the connection under a command
                    log.exception("shard %d reader failed; retrying", self._shard)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                for _, entries in reply or ():
                    if entries:
                        self._dispatcher.dispatch_soon(self._shard, entries, loop)
                        self.position = parse_stream_id(entries[-1][0])
                        self.events_read += len(entries)
                        if self._metrics is not None:
                            self.lag_s = self._metrics.batch_dispatched(entries)
        finally:
            if client is not None:
                await client.aclose()

    async def _last_id(self, client: aioredis.Redis) -> StreamId:
        last: list[Entry] = await client.xrevrange(  # type: ignore[assignment]
            self._key, "+", "-", count=1
        )
        return parse_stream_id(last[0][0]) if last else (0, 0)
