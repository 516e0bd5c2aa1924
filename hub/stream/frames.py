"""Server-Sent Events framing: every byte the event stream sends is built here.

An event frame is built once per event and shared by every subscriber that
receives it; the ``data:`` line is the event JSON exactly as the worker
committed it (msgspec's compact encoding has no raw newline, so it is one line).

The ``event:`` line is the event's type, with one exception (``WIRE_NAMES``):
the spec's ``error`` type goes out as ``event: call_error``. A browser's
EventSource dispatches an event named ``error`` to its ``error`` handlers, the
ones that mean "the connection failed", so a client written like the spec's
own example (``source.onerror = … source.close()``) would close for good on
the first call error. The type in the JSON stays ``error``, and so does the
name ``event_types`` filters on.
"""

from __future__ import annotations

from typing import Final

import msgspec

RETRY_MS: Final = 3000
RETRY: Final = f"retry: {RETRY_MS}\n\n".encode()
PING: Final = b": ping\n\n"

# The one event type whose SSE name is not its type, and why: see above.
WIRE_NAMES: Final = {b"error": b"call_error"}


def wire_name(event_type: bytes) -> bytes:
    """The ``event:`` name an event of ``event_type`` is sent under."""
    return WIRE_NAMES.get(event_type, event_type)


def event_frame(cursor: str, event_type: bytes, data: bytes) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (cursor.encode(), wire_name(event_type), data)


def history_frame(event_type: bytes, data: bytes) -> bytes:
    """A replayed event: no ``id:``, so a reconnect during history starts it over."""
    return b"event: %s\ndata: %s\n\n" % (wire_name(event_type), data)


def cursor_mark(cursor: str) -> bytes:
    """An ``id:``-only block: moves the client's Last-Event-ID without an event.

    Sent after history and with pings, so a client whose filter matched nothing
    for a long time still resumes from a recent position.
    """
    return b"id: %s\n\n" % cursor.encode()


def ping(cursor: str) -> bytes:
    return PING[:-1] + cursor_mark(cursor)


class StreamReset(msgspec.Struct, frozen=True):
    """The ``stream_reset`` control event: the cursor was older than retention."""

    reason: str
    oldest_position: str
    message: str


def stream_reset_frame(reset: StreamReset) -> bytes:
    return event_frame(reset.oldest_position, b"stream_reset", msgspec.json.encode(reset))
