"""``GET /v1/calls/events``: one subscriber's Server-Sent Events stream.

The request registers a ``Subscriber`` with the dispatcher first (live events
buffer from that moment), catches up from Redis to exactly that point (resume
or history), then writes live chunks as the dispatcher hands them over. Every
write runs under a timeout; the client leaving, a full buffer, a stalled
socket or the replica shutting down end the stream at once, and the
subscriber is removed in the same step (I5, I6).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from hub.catch_up import replay_history, replay_log, retention_check
from hub.cursor import Cursor, InvalidCursor
from hub.dispatcher import Dispatcher, StreamFilter, Subscriber
from hub.errors import BadParameter, ServiceUnavailable
from hub.events import EVENT_TYPES, check_dialog_name, check_session_id
from hub.keyspace import Keyspace
from hub.query import Query
from hub.replica import StreamOptions, hub_of
from hub.sse import RETRY, cursor_mark, ping, stream_reset_frame

HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]
READY_TIMEOUT_S: Final = 5.0


def parse_event_types(text: str) -> str:
    unknown = [t for t in text.split(",") if t.strip() and t.strip() not in EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"unknown event type {unknown[0][:64]!r}; valid types: {', '.join(EVENT_TYPES)}"
        )
    return text


class EventStream(Response):
    """The ASGI response that drains one subscriber."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        redis: aioredis.Redis,
        keys: Keyspace,
        stream_filter: StreamFilter,
        resume_from: Cursor | None,
        include_history: bool,
        options: StreamOptions,
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self._dispatcher = dispatcher
        self._redis = redis
        self._keys = keys
        self._filter = stream_filter
        self._resume_from = resume_from
        self._include_history = include_history
        self._options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscriber = Subscriber(self._filter, max_bytes=self._options.buffer_bytes)
        joined = self._dispatcher.add(subscriber)
        left = asyncio.ensure_future(_disconnected(receive))
        # The client leaving closes the subscriber, which wakes the live loop:
        # one future to wait on per turn, not asyncio.wait over two.
        left.add_done_callback(lambda _: subscriber.close(CLOSED_LEFT))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await self._write(send, RETRY)
            await self._catch_up(send, joined, left)
            await self._live(send, subscriber, left)
        except (TimeoutError, OSError, _ClientLeft):
            pass  # a stalled or vanished client: the stream just ends
        finally:
            self._dispatcher.remove(subscriber)
            left.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send, data: bytes) -> None:
        async with asyncio.timeout(self._options.write_timeout_s):
            await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _catch_up(self, send: Send, joined: Cursor, left: asyncio.Future[None]) -> None:
        redis = self._redis
        if self._resume_from is not None:
            start, reset = await retention_check(redis, self._keys,
                                                 self._resume_from)
            if reset is not None:
                await self._write(send, stream_reset_frame(reset))
            chunks = replay_log(redis, self._keys, self._filter, start,
                                joined)
        elif self._include_history:
            chunks = replay_history(redis, self._keys, self._filter,
                                    joined)
        else:
            return
        async for chunk in chunks:
            if left.done():
                raise _ClientLeft
            await self._write(send, chunk)
        if self._include_history and self._resume_from is None:
            await self._write(send, cursor_mark(joined.encode()))

    async def _live(self, send: Send, subscriber: Subscriber, left: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            chunk = subscriber.take()
            if chunk:
                await self._write(send, chunk)
                continue
            if subscriber.closed:
                return
            waiter = subscriber.wait()
            timer = loop.call_later(self._options.ping_s, _ping_due, waiter)
            try:
                woken_for = await waiter
            finally:
                timer.cancel()
            if woken_for is PING_DUE and not subscriber.closed and not subscriber.pending:
                # The buffer is empty: everything dispatched so far that matched
                # was written, so the dispatcher's position is this client's too.
                await self._write(send, ping(self._dispatcher.cursor().encode()))


class _ClientLeft(Exception):
    pass


PING_DUE: Final = object()
CLOSED_LEFT: Final = "left"


def _ping_due(waiter: asyncio.Future[object]) -> None:
    if not waiter.done():
        waiter.set_result(PING_DUE)


async def _disconnected(receive: Receive) -> None:
    """Completes when the client goes away (the ASGI server says so)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


async def open_event_stream(request: Request) -> EventStream:
    """``GET /v1/calls/events``: check the request; the stream starts when it is sent."""
    hub = hub_of(request)
    principal = hub.keys.authenticate(request)
    query = Query(request.query_params, ("event_types", "session_id", "dialog_name",
                                         "include_history", "last_event_id"))
    types = query.text("event_types", check=parse_event_types)
    session_id = query.text("session_id", check=check_session_id)
    dialog_name = query.text("dialog_name", check=check_dialog_name)
    include_history = query.boolean("include_history", False)
    resume_from = _resume_cursor(request, query, hub.settings.shards)
    stream_filter = StreamFilter(
        event_types=frozenset(t.strip().encode() for t in types.split(",") if t.strip()) or None,
        session_id=session_id,
        dialog_name=dialog_name,
        scope=principal.scope,
    )
    try:
        await asyncio.wait_for(hub.dispatcher.ready.wait(), READY_TIMEOUT_S)
    except TimeoutError:
        raise ServiceUnavailable("the event stream is not connected to Redis yet") from None
    return EventStream(
        dispatcher=hub.dispatcher, redis=hub.redis, keys=hub.settings.keyspace,
        stream_filter=stream_filter, resume_from=resume_from,
        include_history=include_history, options=hub.stream_options,
    )


def _resume_cursor(request: Request, query: Query, shards: int) -> Cursor | None:
    header = request.headers.getlist("last-event-id")
    if len(header) > 1:
        raise BadParameter("Last-Event-ID is given more than once", param="Last-Event-ID")
    text, param = (header[0].strip(), "Last-Event-ID") if header and header[0].strip() else (
        query.text("last_event_id"), "last_event_id")
    if not text:
        return None
    try:
        return Cursor.decode(text, shards)
    except InvalidCursor as error:
        raise BadParameter(f"{param} is not a cursor of this stream: {error}",
                           param=param) from None
