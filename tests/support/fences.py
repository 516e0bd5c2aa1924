"""A fence on an event stream: proof that nothing more is due to a subscriber.

The hub's pings carry the stream's cursor. Once a subscriber has a ping whose
cursor covers the last commit's position in every shard, every event it was
due has been sent before that ping: what it received is all it will receive,
and a test can compare without waiting "a bit longer".
"""

from __future__ import annotations

from callhub.cursor import Cursor
from callhub.keyspace import Keyspace
from tests.support.polling import async_wait_until
from tests.support.sse import EventStreamReader
from workers.commit.publisher import CommitOutcome


async def fence(stream: EventStreamReader, outcomes: list[CommitOutcome], shards: int) -> None:
    """Wait for a ping whose cursor covers every commit: then nothing more is due."""
    final = last_positions(outcomes, shards)
    await async_wait_until(lambda: any(
        f.comment == b"ping" and f.id and covers(f.id, final, shards)
        for f in stream.frames), timeout=10, what="a ping past the last commit")


def last_positions(outcomes: list[CommitOutcome], shards: int) -> list[tuple[int, int] | None]:
    """The position of the last of ``outcomes`` in each shard log (None: none there)."""
    keys = Keyspace(shards=shards)
    final: list[tuple[int, int] | None] = [None] * shards
    for outcome in outcomes:
        shard = keys.shard_of(outcome.event.session_id)
        ms, seq = (int(x) for x in (outcome.entry_id or "").split("-"))
        final[shard] = max(final[shard] or (0, 0), (ms, seq))
    return final


def covers(cursor_text: str, final: list[tuple[int, int] | None], shards: int) -> bool:
    """Whether the cursor is at or past ``final`` in every shard."""
    cursor = Cursor.decode(cursor_text, shards)
    return all(f is None or (c is not None and c >= f)
               for c, f in zip(cursor.positions, final, strict=True))
