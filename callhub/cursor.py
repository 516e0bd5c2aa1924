"""Stream cursors: a position in every shard log, as one opaque string.

A cursor is what the SSE ``id:`` carries and what ``Last-Event-ID`` gives back.
It names Redis positions (the last entry id seen in each shard log), not any
replica's state, so it means the same on every replica (DESIGN section 3). A
shard with no position (``None``) is read from "now" when the cursor is used.
"""

from __future__ import annotations

import msgspec

from callhub.tokens import InvalidToken, seal, unseal
from callhub.types import StreamId

_KIND = b"callhub-cursor"
_VERSION = 1
_MAX_PART = 2**64 - 1  # a Redis stream id is two unsigned 64-bit numbers


class InvalidCursor(ValueError):
    pass


def parse_stream_id(text: str | bytes) -> StreamId:
    raw = text.decode() if isinstance(text, bytes) else text
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_stream_id(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    positions: tuple[StreamId | None, ...]

    def encode(self) -> str:
        return seal(_KIND, _VERSION, self)

    @classmethod
    def decode(cls, text: str, shards: int) -> Cursor:
        try:
            cursor = unseal(_KIND, _VERSION, text, cls)
        except InvalidToken as error:
            raise InvalidCursor(f"not a cursor of this service ({error})") from None
        if len(cursor.positions) != shards:
            raise InvalidCursor(
                f"the cursor is for {len(cursor.positions)} shards; this deployment has {shards}"
            )
        for position in cursor.positions:
            # A token anyone can seal may carry any numbers: one Redis would
            # refuse must be a 400 here, never an error from Redis later.
            if position is not None and not all(0 <= part <= _MAX_PART for part in position):
                raise InvalidCursor("the cursor names a position no stream can have")
        return cursor

    @classmethod
    def at(cls, shards: int, shard: int, position: StreamId) -> Cursor:
        """A cursor with one shard's position known and the others unset."""
        positions: list[StreamId | None] = [None] * shards
        positions[shard] = position
        return cls(tuple(positions))
