"""Catch-up from Redis (hub/stream/catch_up.py) on fakeredis: the shard logs,
and the session streams of history, merged in commit (entry-id) order however
the chunks fall; each frame's cursor resumes exactly after it; and the edge of
the retention window, where a cursor at the oldest kept entry loses nothing and
one just before it is moved there with a ``stream_reset``.

The chunk sizes are made tiny so that every merge crosses chunk boundaries.
The real redis-server runs are in tests/integration/test_event_stream.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from unittest import mock

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.cursor import Cursor, StreamId, format_stream_id, parse_stream_id
from callhub.event_filter import EventFilter
from callhub.keyspace import Keyspace
from hub.stream import catch_up
from hub.stream.catch_up import replay_history, replay_log, retention_check
from tests.support.sse import Frame, parse_frame

SHARDS = 3
KEYS = Keyspace(shards=SHARDS)
TYPES = (b"dtmf_received", b"speech_final")

# An entry as a test knows it: (shard, entry id). Its data names it, so the
# frame it becomes says which entry it was.
Placed = tuple[int, StreamId]


def fake() -> fakeredis.aioredis.FakeRedis:
    return fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())


def name(shard: int, entry_id: StreamId) -> bytes:
    return f"{shard}/{format_stream_id(entry_id)}".encode()


def named(data: bytes | None) -> Placed:
    shard, _, entry_id = (data or b"").decode().partition("/")
    return int(shard), parse_stream_id(entry_id)


async def add(redis: fakeredis.aioredis.FakeRedis, key: str, shard: int, entry_id: StreamId,
              event_type: bytes = TYPES[0], session_id: str = "s") -> None:
    await redis.xadd(key, {"type": event_type, "session_id": session_id, "dialog": "helpdesk",
                           "seq": "1", "data": name(shard, entry_id)},
                     id=format_stream_id(entry_id))


def frames_of(chunks: list[bytes]) -> list[Frame]:
    return [parse_frame(block) for block in b"".join(chunks).split(b"\n\n") if block]


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


@pytest.fixture(autouse=True)
def tiny_chunks() -> Iterator[None]:
    with mock.patch.object(catch_up, "LOG_CHUNK", 2), \
            mock.patch.object(catch_up, "FRAMES_PER_WRITE", 3):
        yield


# -- the shard logs, merged --------------------------------------------------------


def shard_logs() -> st.SearchStrategy[list[list[tuple[StreamId, bytes]]]]:
    """Each shard's log: ids in order, close enough in time that shards interleave
    and share milliseconds (the same id in two logs happens: one clock, ms-0 each)."""
    entry = st.tuples(st.integers(0, SHARDS - 1), st.integers(1, 12), st.sampled_from(TYPES))

    def build(drawn: list[tuple[int, int, bytes]]) -> list[list[tuple[StreamId, bytes]]]:
        logs: list[list[tuple[StreamId, bytes]]] = [[] for _ in range(SHARDS)]
        for shard, ms, event_type in sorted(drawn, key=lambda d: (d[0], d[1])):
            log = logs[shard]
            seq = log[-1][0][1] + 1 if log and log[-1][0][0] == ms else 0
            log.append(((ms, seq), event_type))
        return logs

    return st.lists(entry, max_size=24).map(build)


def around(log: list[tuple[StreamId, bytes]]) -> st.SearchStrategy[StreamId | None]:
    """A position in a log: none, the very start, at an entry, or between entries."""
    ids = [entry_id for entry_id, _ in log]
    between = [(ms, seq + 1) for ms, seq in ids] + [(ms + 1, 0) for ms, _ in ids]
    return st.one_of(st.none(), st.just((0, 0)), st.sampled_from(ids + between)
                     if ids else st.just((0, 0)))


@st.composite
def replays(draw: st.DrawFn) -> tuple[list[list[tuple[StreamId, bytes]]],
                                       list[StreamId | None], list[StreamId | None],
                                       frozenset[bytes] | None]:
    logs = draw(shard_logs())
    start = [draw(around(log)) for log in logs]
    stop = []
    for log, begin in zip(logs, start, strict=True):
        end = draw(around(log))
        # The dispatcher joined at or after where the subscriber resumes from.
        stop.append(None if end is None else max(end, begin or (0, 0)))
    types = draw(st.one_of(st.none(), st.sampled_from([frozenset({t}) for t in TYPES])))
    return logs, start, stop, types


def expected_entries(logs: list[list[tuple[StreamId, bytes]]], start: list[StreamId | None],
                     stop: list[StreamId | None], types: frozenset[bytes] | None) -> set[Placed]:
    """What a replay from ``start`` to ``stop`` owes: each shard after its start
    (or from the stop, when the cursor has no position there) up to its stop."""
    due = set()
    for shard, log in enumerate(logs):
        end = stop[shard]
        begin = start[shard] if start[shard] is not None else end
        for entry_id, event_type in log:
            if end is not None and begin is not None and begin < entry_id <= end and (
                    types is None or event_type in types):
                due.add((shard, entry_id))
    return due


@given(replays())
def test_replay_log_merges_the_shards_in_commit_order_and_each_cursor_resumes_exactly(
    replay: tuple[list[list[tuple[StreamId, bytes]]], list[StreamId | None],
                  list[StreamId | None], frozenset[bytes] | None],
) -> None:
    logs, start, stop, types = replay
    stream_filter = EventFilter(event_types=types)
    stop_cursor = Cursor(tuple(stop))

    async def run() -> tuple[list[Frame], list[list[Placed]]]:
        redis = fake()
        for shard, log in enumerate(logs):
            for entry_id, event_type in log:
                await add(redis, KEYS.log(shard), shard, entry_id, event_type)
        frames = frames_of(await collect(
            replay_log(redis, KEYS, stream_filter, Cursor(tuple(start)), stop_cursor)))
        resumed = []
        for frame in frames:  # a client cut off after this frame resumes from its id
            assert frame.id is not None
            again = frames_of(await collect(replay_log(
                redis, KEYS, stream_filter, Cursor.decode(frame.id, SHARDS), stop_cursor)))
            resumed.append([named(f.data) for f in again])
        return frames, resumed

    frames, resumed = asyncio.run(run())
    got = [named(f.data) for f in frames]
    assert len(got) == len(set(got)), "no entry twice"
    assert set(got) == expected_entries(logs, start, stop, types)
    ids = [entry_id for _, entry_id in got]
    assert ids == sorted(ids), "in entry-id (commit) order across the shards"
    types_of = {(shard, entry_id): event_type.decode()
                for shard, log in enumerate(logs) for entry_id, event_type in log}
    for n, frame in enumerate(frames):
        shard, entry_id = got[n]
        assert frame.event == types_of[shard, entry_id]
        assert Cursor.decode(frame.id or "", SHARDS).positions[shard] == entry_id
        assert resumed[n] == got[n + 1:], f"resuming after frame {n} gives exactly the rest"


async def test_replay_log_frames_carry_the_event_and_the_cursor_after_it() -> None:
    redis = fake()
    await add(redis, KEYS.log(0), 0, (5, 0), b"speech_final")
    await add(redis, KEYS.log(1), 1, (3, 0))
    await add(redis, KEYS.log(1), 1, (7, 0))
    start = Cursor(((0, 0), (0, 0), None))
    stop = Cursor(((9, 0), (9, 0), (4, 0)))
    frames = frames_of(await collect(replay_log(redis, KEYS, EventFilter(), start, stop)))
    assert [(f.event, f.data) for f in frames] == [
        ("dtmf_received", b"1/3-0"), ("speech_final", b"0/5-0"), ("dtmf_received", b"1/7-0")]
    # A shard the cursor had no position for starts at the stop's (nothing due there).
    assert [Cursor.decode(f.id or "", SHARDS).positions for f in frames] == [
        ((0, 0), (3, 0), (4, 0)), ((5, 0), (3, 0), (4, 0)), ((5, 0), (7, 0), (4, 0))]


async def test_replay_log_stops_at_the_stop_even_with_later_entries_in_the_log() -> None:
    redis = fake()
    for ms in range(1, 8):
        await add(redis, KEYS.log(0), 0, (ms, 0))
    frames = frames_of(await collect(replay_log(
        redis, KEYS, EventFilter(), Cursor(((2, 0), None, None)),
        Cursor(((5, 0), None, None)))))
    assert [f.data for f in frames] == [b"0/3-0", b"0/4-0", b"0/5-0"]


# -- history: the session streams of the active calls, merged ----------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[str, StreamId]], list[StreamId | None]]:
    """Events of a few calls committed one after another: (session, entry id).

    Calls on one shard share its log's ids (one id order); two shards may
    share a millisecond."""
    sessions = draw(st.lists(st.sampled_from([f"call-{n}" for n in range(8)]),
                             min_size=1, max_size=30))
    steps = draw(st.lists(st.booleans(), min_size=len(sessions), max_size=len(sessions)))
    last: dict[int, StreamId] = {}
    ms = 1
    events = []
    for session_id, same_ms in zip(sessions, steps, strict=True):
        ms += 0 if same_ms else 1
        shard = KEYS.shard_of(session_id)
        previous = last.get(shard)
        entry_id = (ms, previous[1] + 1) if previous and previous[0] == ms else (ms, 0)
        last[shard] = entry_id
        events.append((session_id, entry_id))
    stop = [draw(st.one_of(st.none(), st.just(last[s]), st.just((ms // 2, 0))))
            if s in last else draw(st.one_of(st.none(), st.just((ms, 0))))
            for s in range(SHARDS)]
    return events, stop


@given(histories(), st.data())
def test_replay_history_merges_the_calls_in_commit_order_up_to_the_stop(
    history: tuple[list[tuple[str, StreamId]], list[StreamId | None]], data: st.DataObject,
) -> None:
    events, stop = history
    calls = sorted({session_id for session_id, _ in events})
    ended = set(data.draw(st.lists(st.sampled_from(calls), max_size=len(calls) - 1)))

    async def run() -> list[Frame]:
        redis = fake()
        for session_id, entry_id in events:
            shard = KEYS.shard_of(session_id)
            await add(redis, KEYS.call_events(session_id), shard, entry_id,
                      session_id=session_id)
        for session_id in calls:
            if session_id not in ended:
                await redis.zadd(KEYS.active(KEYS.shard_of(session_id)), {session_id: 1})
        return frames_of(await collect(
            replay_history(redis, KEYS, EventFilter(), Cursor(tuple(stop)))))

    frames = asyncio.run(run())
    assert all(f.id is None for f in frames), "history frames carry no id"
    got = [named(f.data) for f in frames]
    due = [(KEYS.shard_of(sid), entry_id) for sid, entry_id in events
           if sid not in ended and (end := stop[KEYS.shard_of(sid)]) is not None
           and entry_id <= end]
    assert sorted(got) == sorted(due) and len(got) == len(set(got))
    ids = [entry_id for _, entry_id in got]
    assert ids == sorted(ids), "in entry-id (commit) order across the calls"


# -- the retention window ------------------------------------------------------------


async def trimmed_log(redis: fakeredis.aioredis.FakeRedis, ids: list[StreamId],
                      oldest_kept: StreamId | None, shard: int = 0) -> None:
    """A shard log that had ``ids`` and kept those from ``oldest_kept`` on (None: none)."""
    for entry_id in ids:
        await add(redis, KEYS.log(shard), shard, entry_id)
    if oldest_kept is None:
        await redis.xtrim(KEYS.log(shard), maxlen=0, approximate=False)
    else:
        await redis.xtrim(KEYS.log(shard), minid=format_stream_id(oldest_kept),
                          approximate=False)


def just_before(entry_id: StreamId) -> StreamId:
    """The greatest stream id below ``entry_id``."""
    ms, seq = entry_id
    return (ms, seq - 1) if seq else (ms - 1, 2**64 - 1)


def at(shard0: StreamId | None, shard1: StreamId | None = None,
       shard2: StreamId | None = None) -> Cursor:
    return Cursor((shard0, shard1, shard2))


TEN = [(ms, 0) for ms in range(1, 11)]


async def test_a_cursor_exactly_at_the_oldest_kept_entry_is_left_alone() -> None:
    redis = fake()
    await trimmed_log(redis, TEN, (6, 0))
    start = at((6, 0))
    adjusted, reset = await retention_check(redis, KEYS, start)
    assert reset is None and adjusted is start
    frames = frames_of(await collect(replay_log(redis, KEYS, EventFilter(), adjusted,
                                                at((10, 0)))))
    assert [f.data for f in frames] == [b"0/7-0", b"0/8-0", b"0/9-0", b"0/10-0"]


async def test_a_cursor_just_before_the_oldest_kept_entry_is_reset_to_just_before_it() -> None:
    redis = fake()
    await trimmed_log(redis, TEN, (6, 0))
    start = at((5, 0), (3, 0))  # shard 1 has no log yet: nothing to check there
    adjusted, reset = await retention_check(redis, KEYS, start)
    # (6, 0) has no id before it in its millisecond: the one before is the
    # previous millisecond's last possible id.
    assert adjusted.positions == ((5, 2**64 - 1), (3, 0), None)
    assert reset is not None and reset.reason == "cursor_expired"
    assert reset.oldest_position == adjusted.encode()
    frames = frames_of(await collect(replay_log(redis, KEYS, EventFilter(), adjusted,
                                                at((10, 0), (3, 0)))))
    assert [f.data for f in frames][:2] == [b"0/6-0", b"0/7-0"] and len(frames) == 5


async def test_within_a_millisecond_the_edge_is_the_previous_sequence_number() -> None:
    redis = fake()
    await trimmed_log(redis, [(7, 0), (7, 1), (7, 2), (7, 3)], (7, 2))
    adjusted, reset = await retention_check(redis, KEYS, at((7, 1)))
    # (7, 1) was trimmed but it is the edge itself: the notice comes, the
    # position stays (the log keeps no record of which ids it trimmed).
    assert reset is not None and adjusted.positions[0] == (7, 1)
    adjusted, reset = await retention_check(redis, KEYS, at((7, 0)))
    assert reset is not None and adjusted.positions[0] == (7, 1)
    adjusted, reset = await retention_check(redis, KEYS, at((7, 2)))
    assert reset is None and adjusted.positions[0] == (7, 2)


async def test_an_untrimmed_log_never_resets_however_old_the_cursor() -> None:
    redis = fake()
    for entry_id in TEN[4:]:  # its first entry is (5, 0), but it never lost one
        await add(redis, KEYS.log(0), 0, entry_id)
    start = at((1, 0), None, (2, 0))  # shard 2's log does not exist
    adjusted, reset = await retention_check(redis, KEYS, start)
    assert reset is None and adjusted is start


async def test_a_log_trimmed_empty_resets_to_just_before_its_last_id() -> None:
    redis = fake()
    await trimmed_log(redis, TEN, None)
    adjusted, reset = await retention_check(redis, KEYS, at((4, 0)))
    assert reset is not None and adjusted.positions[0] == (9, 2**64 - 1)
    adjusted, reset = await retention_check(redis, KEYS, at((10, 0)))
    assert reset is None and adjusted.positions[0] == (10, 0)


@given(
    kept_from=st.integers(1, 11),  # 11: every entry trimmed
    position=st.tuples(st.integers(0, 11), st.integers(0, 2)),
)
def test_after_the_retention_check_a_replay_gives_every_kept_entry_after_the_cursor(
    kept_from: int, position: StreamId,
) -> None:
    ids = [(ms, seq) for ms in range(1, 11) for seq in range(2)]
    oldest = (kept_from, 0) if kept_from <= 10 else None

    async def run() -> tuple[Cursor, object, list[Frame]]:
        redis = fake()
        await trimmed_log(redis, ids, oldest)
        adjusted, reset = await retention_check(redis, KEYS, at(position))
        frames = frames_of(await collect(replay_log(redis, KEYS, EventFilter(), adjusted,
                                                    at((10, 1)))))
        return adjusted, reset, frames

    adjusted, reset, frames = asyncio.run(run())
    edge = oldest if oldest is not None else (10, 1)  # the oldest, or the last id given
    kept = [entry_id for entry_id in ids if oldest is not None and entry_id >= oldest]
    assert [named(f.data)[1] for f in frames] == [e for e in kept if e > position]
    assert (reset is not None) == (kept_from > 1 and position < edge)
    # Reset: moved to just before the edge (the replay's range is exclusive).
    assert adjusted.positions[0] == (just_before(edge) if reset is not None else position)
