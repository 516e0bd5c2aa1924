"""The newest position each shard log ever had, to tell a cursor Redis never issued.

A resume cursor ahead of a replica's readers is normally ahead of *this*
replica only (another one read further, or this one restarted), and waiting a
moment for the readers is right: the entries are in Redis. A cursor ahead of
Redis itself — forged, or from a Redis that lost entries in a failover or was
flushed — is never reached, and waiting for it only holds the request. A log's
last-generated id (XINFO STREAM, which trimming does not lower) tells the two
apart: one call per shard the readers are behind on, only on that rare path.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import ResponseError

from callhub.connections import RedisClient
from callhub.cursor import Cursor, parse_stream_id
from callhub.keyspace import Keyspace
from callhub.types import StreamId


async def beyond_logs(redis: RedisClient, keyspace: Keyspace, cursor: Cursor,
                      readers: Sequence[StreamId | None]) -> bool:
    """Whether ``cursor`` names, in a shard the readers have not reached, a
    position past the newest entry that shard's log ever had."""
    for shard, (want, have) in enumerate(zip(cursor.positions, readers, strict=True)):
        if want is None or (have is not None and have >= want):
            continue
        if want > await _last_generated(redis, keyspace.log(shard)):
            return True
    return False


async def _last_generated(redis: RedisClient, key: str) -> StreamId:
    try:
        info = await redis.xinfo_stream(key)
    except ResponseError:  # no such key: the log never had an entry
        return (0, 0)
    value = info.get("last-generated-id") or b"0-0"
    return parse_stream_id(value)
