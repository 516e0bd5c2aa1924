"""Where a consumer keeps its stream cursor between runs of its own process.

A cursor store holds one string: the stream cursor after the last event the
consumer has *handled*. The client loads it when ``events()`` starts (the
stream then goes on exactly after it, on any replica) and saves it when told
to: ``await stream.ack()`` after handling an event, or every N events with
``checkpoint_every=N``.

The trade-off is the consumer's: checkpoint after handling and a crash between
the two repeats at most the events since the last checkpoint
(at-least-once); make handling and checkpoint one transaction (your database
as the store, ``save`` in the handler's transaction) and nothing repeats
(exactly-once). Saving *before* handling would lose events instead.

The protocol is two methods, so any database can be one. Two come with the
client: ``FileCursorStore`` (one small file, replaced atomically, so a kill
at any moment leaves the old cursor or the new, never half of one) and
``RedisCursorStore`` (one key, in the consumer's Redis, not the hub's).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis


@runtime_checkable
class CursorStore(Protocol):
    async def load(self) -> str | None:
        """The saved cursor, or None if nothing was ever saved."""
        ...

    async def save(self, cursor: str) -> None:
        """Keep ``cursor`` (durably, before returning) in place of the old one."""
        ...


class MemoryCursorStore:
    """A store that lasts as long as the process (tests, notebooks)."""

    def __init__(self, cursor: str | None = None) -> None:
        self.cursor = cursor
        self.saves = 0

    async def load(self) -> str | None:
        return self.cursor

    async def save(self, cursor: str) -> None:
        self.cursor = cursor
        self.saves += 1


class FileCursorStore:
    """The cursor in a file: written to a temporary file beside it, flushed to
    disk, then renamed over it (``os.replace`` is atomic on POSIX and Windows)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def load(self) -> str | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        return text or None

    async def save(self, cursor: str) -> None:
        directory = self.path.parent
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="ascii") as file:
                file.write(cursor + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RedisCursorStore:
    """The cursor in one Redis key (``SET``: atomic; durable as that Redis is)."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.redis = redis
        self.key = key

    async def load(self) -> str | None:
        value = await self.redis.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def save(self, cursor: str) -> None:
        await self.redis.set(self.key, cursor)
