"""Catching a subscriber up from Redis before it goes live.

Two replays, both stopping exactly at the position the subscriber joined the
dispatcher at (everything after it is already in its buffer, I4):

- ``replay_log``: resume after a cursor (I3). The shard logs are read from the
  cursor in chunks and merged in entry-id order; each frame carries the cursor
  after its event, so a client cut off during catch-up resumes exactly.
- ``replay_history``: ``include_history``. The session streams of the matching
  active calls are read in small chunks and merged in entry-id order. History
  frames carry no ``id:`` (the stream sends the seam's cursor when history
  ends): a client cut off during history starts it over.

Both hold at most one chunk per source in memory, however long the history, and
history's chunks together about one log chunk, however many calls it covers.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from callhub.connections import RedisClient
from callhub.cursor import Cursor, format_stream_id, parse_stream_id
from callhub.event_filter import EventFilter
from callhub.keyspace import Keyspace
from callhub.layout import (
    CALL_DIALOG_NAME,
    CALL_STATUS,
    ENTRY_DATA,
    ENTRY_DIALOG,
    ENTRY_SESSION_ID,
    ENTRY_TYPE,
    STATUS_TERMINATED,
)
from callhub.types import Entry, StreamId
from hub.stream.frames import StreamReset, event_frame, history_frame

LOG_CHUNK = 256
FRAMES_PER_WRITE = 256
# History merges one chunk per active call: together they hold about one log
# chunk (LOG_CHUNK entries), whatever the number of calls, so a client that does
# not read costs a Redis page, not a page per call (with 200 calls, 4096 entries
# in memory per stream held ~9 MB each). Two entries at least, or a big history
# becomes a round trip per event.
MIN_HISTORY_CHUNK = 4


@dataclass
class _Source:
    """One stream read forward in chunks, from after ``position`` to ``stop``."""

    key: str
    shard: int
    position: StreamId
    stop: StreamId
    chunk: int
    exhausted: bool = False

    async def next_chunk(self, redis: RedisClient) -> list[Entry]:
        if self.exhausted or self.position >= self.stop:
            return []
        entries: list[Entry] = await redis.xrange(  # type: ignore[assignment]
            self.key, f"({format_stream_id(self.position)}", format_stream_id(self.stop),
            count=self.chunk,
        )
        if len(entries) < self.chunk:
            self.exhausted = True
        if entries:
            self.position = parse_stream_id(entries[-1][0])
        return entries


async def _merged(redis: RedisClient, sources: Sequence[_Source]
                  ) -> AsyncIterator[tuple[_Source, Entry]]:
    """Entries of all sources in entry-id order, one chunk per source in memory."""
    heap: list[tuple[StreamId, int, int]] = []
    buffers: list[list[Entry]] = []
    for n, source in enumerate(sources):
        buffers.append(await source.next_chunk(redis))
        if buffers[n]:
            heap.append((parse_stream_id(buffers[n][0][0]), n, 0))
    heapq.heapify(heap)
    while heap:
        _, n, i = heapq.heappop(heap)
        yield sources[n], buffers[n][i]
        i += 1
        if i == len(buffers[n]):
            buffers[n] = await sources[n].next_chunk(redis)
            i = 0
        if i < len(buffers[n]):
            heapq.heappush(heap, (parse_stream_id(buffers[n][i][0]), n, i))


async def retention_check(
    redis: RedisClient, keys: Keyspace, start: Cursor
) -> tuple[Cursor, StreamReset | None]:
    """Move shards whose position fell out of the log's window to its oldest entry.

    A position before the oldest retained entry of a log that has lost entries
    may have missed some: the stream says so with ``stream_reset`` and goes on
    from the oldest retained entry. (A position exactly at the window's edge
    gets the notice too, though it lost nothing: the log keeps no record of
    which ids it trimmed.)
    """
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.shards):
        pipe.xinfo_stream(keys.log(shard))
    infos = await pipe.execute(raise_on_error=False)
    positions = list(start.positions)
    moved = False
    for shard, info in enumerate(infos):
        position = positions[shard]
        if position is None or isinstance(info, Exception):
            continue  # no position to check, or no log yet
        if info["entries-added"] == info["length"]:
            continue  # nothing was ever trimmed
        first = info["first-entry"]
        oldest = parse_stream_id(first[0]) if first else parse_stream_id(
            info["last-generated-id"])
        if position < oldest:
            # Just before the oldest entry: the replay's range is exclusive.
            positions[shard] = (oldest[0], oldest[1] - 1) if oldest[1] else (oldest[0] - 1,
                                                                              2**64 - 1)
            moved = True
    if not moved:
        return start, None
    adjusted = Cursor(tuple(positions))
    return adjusted, StreamReset(
        reason="cursor_expired",
        oldest_position=adjusted.encode(),
        message="the cursor is older than the retention window: events before the oldest "
        "retained position are gone, and the stream continues from there",
    )


async def replay_log(
    redis: RedisClient, keys: Keyspace, stream_filter: EventFilter, start: Cursor,
    stop: Cursor,
) -> AsyncIterator[bytes]:
    """Matching log entries after ``start`` up to ``stop``, as framed chunks."""
    positions: list[StreamId | None] = [
        mine if mine is not None else theirs
        for mine, theirs in zip(start.positions, stop.positions, strict=True)
    ]
    sources = [
        _Source(keys.log(shard), shard, position, end, LOG_CHUNK)
        for shard, (position, end) in enumerate(zip(positions, stop.positions, strict=True))
        if position is not None and end is not None and position < end
    ]
    frames: list[bytes] = []
    async for source, (entry_id, fields) in _merged(redis, sources):
        positions[source.shard] = parse_stream_id(entry_id)
        event_type = fields[ENTRY_TYPE]
        if stream_filter.matches(event_type, fields[ENTRY_SESSION_ID], fields[ENTRY_DIALOG]):
            cursor = Cursor(tuple(positions)).encode()
            frames.append(event_frame(cursor, event_type, fields[ENTRY_DATA]))
            if len(frames) >= FRAMES_PER_WRITE:
                yield b"".join(frames)
                frames = []
    if frames:
        yield b"".join(frames)


async def active_calls(
    redis: RedisClient, keys: Keyspace, stream_filter: EventFilter
) -> list[str]:
    """The session ids of the active calls a history replay covers."""
    f = stream_filter
    if f.session_id:
        fields: list[bytes | None] = await redis.hmget(  # type: ignore[assignment]
            keys.call(f.session_id.decode()), CALL_STATUS, CALL_DIALOG_NAME
        )
        status, dialog = fields
        if status is None or status == STATUS_TERMINATED or not f.sees_dialog(dialog or b""):
            return []
        return [f.session_id.decode()]
    if f.dialog_name:
        dialogs = [f.dialog_name] if f.sees_dialog(f.dialog_name) else []
        indexes = [keys.active_dialog(s, d.decode()) for s in range(keys.shards) for d in dialogs]
    elif f.scope is not None:
        indexes = [keys.active_dialog(s, d.decode()) for s in range(keys.shards)
                   for d in sorted(f.scope)]
    else:
        indexes = [keys.active(s) for s in range(keys.shards)]
    pipe = redis.pipeline(transaction=False)
    for index in indexes:
        pipe.zrange(index, 0, -1)
    return [member.decode() for members in await pipe.execute() for member in members]


async def replay_history(
    redis: RedisClient, keys: Keyspace, stream_filter: EventFilter, stop: Cursor
) -> AsyncIterator[bytes]:
    """The stored events of the matching active calls up to ``stop``, in entry order."""
    calls = await active_calls(redis, keys, stream_filter)
    chunk = max(MIN_HISTORY_CHUNK, min(64, 2 * LOG_CHUNK // max(1, len(calls))))
    sources = []
    for session_id in calls:
        shard = keys.shard_of(session_id)
        end = stop.positions[shard]
        if end is not None:
            sources.append(_Source(keys.call_events(session_id), shard, (0, 0), end, chunk))
    frames: list[bytes] = []
    async for _, (_, fields) in _merged(redis, sources):
        event_type = fields[ENTRY_TYPE]
        if stream_filter.matches(event_type, fields[ENTRY_SESSION_ID], fields[ENTRY_DIALOG]):
            frames.append(history_frame(event_type, fields[ENTRY_DATA]))
            if len(frames) >= FRAMES_PER_WRITE:
                yield b"".join(frames)
                frames = []
    if frames:
        yield b"".join(frames)
