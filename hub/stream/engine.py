"""StreamEngine: a replica's live event streams, started and stopped as one.

One engine per replica process: a dispatcher, one ``ShardReader`` per shard log
feeding it, the one ``StreamWatchdog`` over every stream, and on Redis Cluster
the start-up note of which master serves which shard. The parts only work
together (a dispatcher nobody feeds never becomes ready; readers with no
watchdog leave stalled writes unbounded), so they are built and torn down in
one place, used as ``async with``, like broadcaster's core::

    async with StreamEngine(settings, client, metrics) as engine:
        ...  # engine.dispatcher serves subscribers

On exit every stream is closed first (clients reconnect elsewhere with their
cursors), then the watchdog, the readers and the cluster note stop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType

from redis.asyncio.cluster import RedisCluster

from callhub.connections import RedisClient
from callhub.settings import Settings
from hub.metrics import HubMetrics
from hub.store.shard_reader import ShardReader
from hub.store.shard_spread import log_shard_spread
from hub.stream.dispatcher import Dispatcher
from hub.stream.watchdog import StreamWatchdog


@dataclass
class StreamOptions:
    """How this replica runs event streams (from the settings)."""

    ping_s: float
    write_timeout_s: float
    buffer_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> StreamOptions:
        return cls(ping_s=settings.ping_interval_ms / 1000,
                   write_timeout_s=settings.write_timeout_ms / 1000,
                   buffer_bytes=settings.subscriber_buffer_bytes)


class StreamEngine:
    def __init__(self, settings: Settings, client: RedisClient, metrics: HubMetrics) -> None:
        """``client``: the replica's Redis client; on a cluster the readers ask
        it which master serves their shard (after a failover too)."""
        self.options = StreamOptions.of(settings)
        self.dispatcher = Dispatcher(settings.shards,
                                     linger_s=settings.stream_linger_ms / 1000)
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._settings = settings
        self.readers = [ShardReader(settings, shard, self.dispatcher, metrics,
                                    cluster=self._cluster)
                        for shard in range(settings.shards)]
        metrics.watch(self.dispatcher, self.readers)
        self._tasks: list[asyncio.Task[None]] = []
        self._helpers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> StreamEngine:
        self._tasks = [asyncio.create_task(reader.run(), name=f"shard-reader-{n}")
                       for n, reader in enumerate(self.readers)]
        watchdog = StreamWatchdog(self.dispatcher, ping_s=self.options.ping_s,
                                  write_timeout_s=self.options.write_timeout_s)
        self._helpers = [asyncio.create_task(watchdog.run(), name="stream-watchdog")]
        if self._cluster is not None:
            self._helpers.append(asyncio.create_task(
                log_shard_spread(self._cluster, self._settings.keyspace), name="shard-spread"))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self.dispatcher.close_all()
        for helper in self._helpers:
            helper.cancel()
        await asyncio.gather(*(reader.stop(task)
                               for reader, task in zip(self.readers, self._tasks, strict=True)))
