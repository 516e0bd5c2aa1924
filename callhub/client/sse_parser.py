"""An incremental Server-Sent Events parser: the client side of ``hub/stream/frames.py``.

It follows the WHATWG "interpreting an event stream" rules, which a client must
follow to understand any conforming server (a proxy may re-frame the stream):
lines end in LF, CRLF or a lone CR (even one split across two reads); a
leading BOM is dropped; ``:`` starts a comment; ``data:`` lines join with LF;
an ``id:`` sets the last event id even in a block without data (callhub's
pings and its post-history mark are such blocks), unless it contains NUL;
``retry:`` is honoured only when it is all ASCII digits; an incomplete block at
the end of the stream is discarded, its ``id:`` included.

Data stays ``bytes``: ``callhub tail --json`` prints it exactly as received.
(httpx-sse would decode it to ``str`` and needs a new dependency for ~80
lines; this parser also hands back comments, which a tail counts as liveness.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, TypeAlias

_LINE_END: Final = re.compile(rb"\r\n|\r|\n")
_BOM: Final = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SseEvent:
    """A dispatched event: its type (``message`` when unnamed), data, and the
    last event id in force when it was dispatched."""

    type: str
    data: bytes
    last_event_id: str


@dataclass(frozen=True)
class SseComment:
    """A ``:`` line (callhub sends ``: ping`` on idle streams)."""

    text: bytes


@dataclass(frozen=True)
class SseMark:
    """A block with an ``id:`` and no data (only with ``SseParser(marks=True)``).

    callhub sends one after a history replay (the seam to live events) and
    with every ping: the stream's position moved though no event came.
    """

    last_event_id: str


SseItem: TypeAlias = SseEvent | SseComment | SseMark


class SseParser:
    """Feed it the bytes of one connection as they arrive; it returns what they complete.

    ``last_event_id`` and ``retry_ms`` are what a client reconnects with: make
    the next connection's parser with ``SseParser(last_event_id=old.last_event_id)``.
    """

    def __init__(self, last_event_id: str = "", *, marks: bool = False) -> None:
        self.last_event_id = last_event_id
        self._marks = marks
        self._block_id = False  # the block being read has an id: line
        self.retry_ms: int | None = None
        self._id_buffer = last_event_id
        self._event_type = ""
        self._data: list[bytes] = []
        self._pending = b""
        self._at_start = True
        self._skip_lf = False  # the last read ended in CR: a following LF ends no line

    def feed(self, chunk: bytes) -> list[SseItem]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        buffer = self._pending + chunk
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._pending = buffer
                return []
            self._at_start = False
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM):]
        items: list[SseItem] = []
        position = 0
        for match in _LINE_END.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer):
                self._skip_lf = True
            item = self._line(buffer[position:match.start()])
            if item is not None:
                items.append(item)
            position = match.end()
        self._pending = buffer[position:]
        return items

    def _line(self, line: bytes) -> SseItem | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return SseComment(line[1:].removeprefix(b" "))
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event_type = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._id_buffer = value.decode("utf-8", "replace")
            self._block_id = True
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | SseMark | None:
        self.last_event_id = self._id_buffer
        data, self._data = self._data, []
        event_type, self._event_type = self._event_type, ""
        had_id, self._block_id = self._block_id, False
        if not data:
            return SseMark(self.last_event_id) if had_id and self._marks else None
        return SseEvent(event_type or "message", b"\n".join(data), self.last_event_id)
