"""Subscriber: one open event stream as the dispatcher sees it, and its filter.

A subscriber is what the dispatcher pushes chunks to and the stream's own task
takes them from: a bounded buffer (a subscriber whose buffer overflows is
closed, I5, and resumes from Redis with its cursor), the direct write (of a
push, or of the watchdog's ping) while its task is parked with nothing
buffered (``hub.stream.direct_write``), and the two small counters the
replica's one watchdog ages (``hub.stream.watchdog``), so no subscriber needs
a timer of its own. ``EventFilter`` is what it asked for, plus the dialogs its
key may see (``callhub.event_filter``); the dispatcher groups subscribers by it.
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.types import Send

from callhub.event_filter import EventFilter
from hub.stream.direct_write import start_send

CLOSED_OVERFLOW: Final = "overflow"
CLOSED_SHUTDOWN: Final = "shutdown"
CLOSED_STALLED: Final = "stalled"  # a write took longer than the write timeout
CLOSED_LEFT: Final = "left"  # the client went away
NOT_WRITING: Final = -1


class Subscriber:
    """One open stream: its filter and a bounded buffer of unsent chunks.

    Kept small on purpose (an idle replica holds thousands): a plain list for
    the buffer (an empty deque already allocates a 64-slot block), and two
    small ints the watchdog ages instead of a timer per subscriber.
    """

    __slots__ = ("_buffered", "_chunks", "_waiter", "closed", "filter", "idle_ticks",
                 "max_bytes", "sender", "task", "write_ticks")

    def __init__(self, stream_filter: EventFilter, *, max_bytes: int) -> None:
        self.filter = stream_filter
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[object] | None = None
        self.closed: str | None = None
        # Watchdog state: ticks the write in progress has taken (NOT_WRITING
        # between writes), ticks since the last write ended, and the task that
        # writes (cancelled if a write stalls).
        self.write_ticks = NOT_WRITING
        self.idle_ticks = 0
        self.task: asyncio.Task[None] | None = None
        # The stream's ASGI send, set once it is live: pushes may write directly.
        self.sender: Send | None = None

    def push(self, chunk: bytes) -> None:
        if self.closed:
            return
        if self._parked():
            # The task is parked in its live loop, so nothing is buffered and no
            # write is under way: write now instead of waking it to.
            self._write_now(chunk)
            return
        self._buffered += len(chunk)
        if self._buffered > self.max_bytes:
            self.close(CLOSED_OVERFLOW)
            return
        self._chunks.append(chunk)
        self._wake(None)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = reason
            self._chunks = []
            self._buffered = 0
            self._wake(None)

    def client_left(self, _: object = None) -> None:
        """Called by the stream's ``ClientWatch`` when the client has gone away."""
        self.close(CLOSED_LEFT)

    def cut_off(self) -> None:
        """End a stream whose write is stuck: close it and cancel its task.

        Closing alone would not do: the task waits inside the server's send
        for a client that does not read, and only a cancel gets it out.
        """
        if self.closed == CLOSED_STALLED:
            return  # cancelled once already
        self.close(CLOSED_STALLED)
        self.closed = CLOSED_STALLED  # even if it was closed for another reason first
        self.write_ticks = NOT_WRITING
        if self.task is not None:
            self.task.cancel()

    def take(self) -> bytes:
        """Everything buffered, as one chunk (empty if nothing)."""
        chunks = self._chunks
        if not chunks:
            return b""
        chunk = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        return chunk

    @property
    def pending(self) -> bool:
        return bool(self._chunks)

    def wait(self) -> asyncio.Future[object]:
        """A future that completes when there is something to take, on close
        (result None), or with a ``PendingSend`` for the task to finish (a
        push or a ping the client was too slow to take at once)."""
        # The task's loop, not asyncio.get_running_loop(): that one asks the
        # kernel for the process id on every call (a syscall per delivery).
        loop = self.task.get_loop() if self.task is not None else asyncio.get_running_loop()
        waiter: asyncio.Future[object] = loop.create_future()
        if self._chunks or self.closed:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter

    def ping(self, frame: bytes) -> None:
        """The watchdog found this stream idle for a ping interval: write ``frame``.

        Written here, as a push is, not by waking the stream's task: with
        thousands of idle streams a ping every interval each was most of an
        idle replica's work (a future, a task step and a write per ping). A
        stream that is not parked in its live loop is not idle (it is
        catching up, or about to write what was pushed) and is left alone.
        """
        if self._parked() and not self.closed:
            self._write_now(frame)

    def _parked(self) -> bool:
        """Whether the task waits in its live loop (so nothing is buffered)."""
        waiter = self._waiter
        return waiter is not None and self.sender is not None and not waiter.done()

    def _write_now(self, chunk: bytes) -> None:
        assert self.sender is not None
        pending = start_send(self.sender, {"type": "http.response.body", "body": chunk,
                                           "more_body": True})
        if pending is None:
            self.idle_ticks = 0
        else:  # the client is slow: the task finishes the write, watched
            self.write_ticks = 0
            self._wake(pending)

    def _wake(self, why: object) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(why)

