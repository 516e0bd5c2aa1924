"""Positions in a shard log: entry ids as (ms, seq) pairs, and their neighbours.

The forwarder's cursor means "everything up to here is done", and the next
read starts strictly after it; so the cursor below a pending entry is that
entry's predecessor, the smallest id before it, whether or not an entry
ever had that id.
"""

from __future__ import annotations

from typing import Final

from callhub.cursor import format_stream_id, parse_stream_id
from callhub.types import StreamId

MAX_SEQ: Final = 2**64 - 1

__all__ = ["MAX_SEQ", "format_stream_id", "parse_stream_id", "predecessor", "successor"]


def predecessor(position: StreamId) -> StreamId:
    """The largest id below ``position`` (``(0, 0)`` has none and stays)."""
    ms, seq = position
    if seq > 0:
        return ms, seq - 1
    if ms > 0:
        return ms - 1, MAX_SEQ
    return 0, 0


def successor(position: StreamId) -> StreamId:
    """The smallest id above ``position``."""
    ms, seq = position
    return (ms, seq + 1) if seq < MAX_SEQ else (ms + 1, 0)
