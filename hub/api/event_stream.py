"""``GET /v1/calls/events``: one subscriber's Server-Sent Events stream.

The request registers a ``Subscriber`` with the dispatcher first (live events
buffer from that moment), catches up from Redis to exactly that point (resume
or history), then writes live chunks as the dispatcher hands them over. The
client leaving, a full buffer, a stalled write (found by the replica's
watchdog, ``hub.stream.watchdog``) or the replica shutting down end the
stream at once, and the subscriber is removed in the same step (I5, I6).

This is a plain ASGI function, served by ``hub.app`` ahead of Starlette's
middleware stack: each middleware layer would hold a suspended coroutine,
closures and a ``Request`` for the whole life of every stream and wrap every
write in three more calls, which at thousands of long-lived streams is most
of their memory and a good part of their CPU. What the stack would add is done
here: the CORS headers (handed in) and errors as JSON answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from callhub.cursor import Cursor, InvalidCursor
from callhub.event_filter import EventFilter
from callhub.events import EVENT_TYPES, check_dialog_name, check_session_id
from hub.api.auth import presented_key
from hub.api.query import Query
from hub.api.replica import Replica
from hub.api.stream_tokens import TOKEN_PARAMETER, redeem
from hub.errors import REDIS_ERRORS, BadParameter, ServiceUnavailable, error_response, json_error
from hub.store.log_tails import beyond_logs
from hub.stream.catch_up import replay_history, replay_log, retention_check
from hub.stream.client_watch import ClientWatch
from hub.stream.direct_write import PendingSend
from hub.stream.frames import RETRY, WIRE_NAMES, cursor_mark, stream_reset_frame
from hub.stream.subscriber import CLOSED_STALLED, NOT_WRITING, Subscriber

log = logging.getLogger("callhub.stream")

PATH: Final = "/v1/calls/events"
HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]
READY_TIMEOUT_S: Final = 5.0
PARAMETERS: Final = ("event_types", "session_id", "dialog_name", "include_history",
                     "last_event_id")


def parse_event_types(text: str) -> str:
    unknown = [t for t in text.split(",") if t.strip() and t.strip() not in EVENT_TYPES]
    if unknown:
        first = unknown[0].strip()
        alias = [t.decode() for t, name in WIRE_NAMES.items() if name.decode() == first]
        hint = f" (the stream sends {alias[0]} events as {first}; filter on {alias[0]})" \
            if alias else ""
        raise ValueError(
            f"unknown event type {first[:64]!r}{hint}; valid types: {', '.join(EVENT_TYPES)}"
        )
    return text


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a valid request asked for."""

    stream_filter: EventFilter
    resume_from: Cursor | None
    include_history: bool
    key_name: str | None = None  # the API key's name; None when the API is open


def check_request(request: Request, replica: Replica) -> StreamRequest:
    """The request's key and parameters, checked; raises an ``ApiError`` (4xx)."""
    query = Query(request.query_params, (*PARAMETERS, TOKEN_PARAMETER))
    token = query.text(TOKEN_PARAMETER)
    if token:
        if presented_key(request) is not None:
            raise BadParameter(f"give either a key or {TOKEN_PARAMETER}, not both",
                               param=TOKEN_PARAMETER)
        grant = redeem(replica.keys, token)
        principal, bound_session = grant.principal, grant.session_id
    else:
        principal, bound_session = replica.keys.authenticate(request), None
    types = query.text("event_types", check=parse_event_types)
    session_id = query.text("session_id", check=check_session_id)
    if bound_session is not None:
        if session_id and session_id != bound_session:
            raise BadParameter("session_id differs from the one the stream token is for",
                               param="session_id")
        session_id = bound_session
    dialog_name = query.text("dialog_name", check=check_dialog_name)
    include_history = query.boolean("include_history", False)
    resume_from = _resume_cursor(request, query, replica.settings.shards)
    stream_filter = EventFilter(
        event_types=frozenset(t.strip().encode() for t in types.split(",") if t.strip()) or None,
        session_id=session_id,
        dialog_name=dialog_name,
        scope=principal.scope,
    )
    key_name = principal.name if replica.keys.enabled else None
    return StreamRequest(stream_filter, resume_from, include_history, key_name)


def serve_event_stream(replica: Replica, scope: Scope, receive: Receive, send: Send,
                       extra_headers: list[tuple[bytes, bytes]]) -> Awaitable[None]:
    """The ASGI app of ``GET /v1/calls/events``; ``extra_headers`` go on every answer.

    Not a coroutine function: it checks the request and returns the one
    coroutine that answers it (the stream, or its error), so a live stream
    holds one suspended frame here instead of two.
    """
    request = Request(scope)
    try:
        asked = check_request(request, replica)
    except Exception as error:  # every error is answered, as the app's handlers do
        return _answer_error(request, error, scope, receive, send, extra_headers)
    del request  # nothing of the request is kept for the life of the stream
    return _stream(replica, asked, scope, receive, send, extra_headers)


async def _answer_error(request: Request, error: Exception, scope: Scope, receive: Receive,
                        send: Send, extra_headers: list[tuple[bytes, bytes]]) -> None:
    response = await error_response(request, error)
    response.raw_headers += extra_headers
    await response(scope, receive, send)


async def _admit(replica: Replica, asked: StreamRequest, scope: Scope, receive: Receive,
                 send: Send, extra_headers: list[tuple[bytes, bytes]]) -> Callable[[], None] | None:
    """The stream's quota release once it may open (and a resume cursor has been
    reached); None if it was answered with an error."""
    try:
        if not replica.dispatcher.ready.is_set():
            try:
                await asyncio.wait_for(replica.dispatcher.ready.wait(), READY_TIMEOUT_S)
            except TimeoutError:
                raise ServiceUnavailable(
                    "the event stream is not connected to Redis yet") from None
        release = replica.stream_quota.open(scope, asked.key_name)
    except Exception as error:
        await _answer_error(Request(scope), error, scope, receive, send, extra_headers)
        return None
    try:
        if asked.resume_from is not None and not await _reach(replica, asked.resume_from):
            # The cursor is ahead of anything this replica's readers find: entries
            # lost by the Redis it names (a failover), or a cursor Redis never
            # issued. Go on from here; the client may see again what it saw beyond
            # what this Redis still holds.
            log.warning("a resume cursor is ahead of this replica's readers; going on from them")
    except BaseException:  # cancelled (the replica is stopping): the stream never opened
        release()
        raise
    return release


async def _reach(replica: Replica, target: Cursor) -> bool:
    """Wait (briefly) for this replica's readers to pass ``target``; False at
    once for a cursor past what the logs ever held (``hub.store.log_tails``)."""
    dispatcher = replica.dispatcher
    if dispatcher.has_reached(target):
        return True
    with contextlib.suppress(*REDIS_ERRORS):  # cannot tell: wait as for any cursor
        if await beyond_logs(replica.redis, replica.settings.keyspace, target,
                             dispatcher.positions):
            return False
    return await dispatcher.reach(target, READY_TIMEOUT_S)


async def _stream(replica: Replica, asked: StreamRequest, scope: Scope, receive: Receive,
                  send: Send, extra_headers: list[tuple[bytes, bytes]]) -> None:
    """The stream, from its admission to its end: the one frame a live stream holds
    (with the server's own), so nothing it no longer needs stays referenced."""
    release = await _admit(replica, asked, scope, receive, send, extra_headers)
    if release is None:
        return
    dispatcher = replica.dispatcher
    subscriber = Subscriber(asked.stream_filter, max_bytes=replica.stream_options.buffer_bytes)
    task = subscriber.task = asyncio.current_task()
    left: ClientWatch | None = None
    try:
        joined = dispatcher.add(subscriber)
        # The client leaving closes the subscriber, which wakes the live loop:
        # one future to wait on per turn, not asyncio.wait over two, and no task
        # of its own (hub.stream.client_watch).
        left = ClientWatch(receive, subscriber.client_left)
        try:
            # The catch-up's first reads happen before the status line goes out,
            # so a Redis that is down (or loading) is a 503 with Retry-After the
            # client can act on, not a 200 cut short.
            catch_up = await _start_catch_up(replica, asked, joined)
        except REDIS_ERRORS as error:
            log.warning("redis unavailable for an event stream: %s", type(error).__name__)
            response = json_error(503, ServiceUnavailable.code,
                                  "the event store is unreachable; retry",
                                  headers=ServiceUnavailable.headers)
            response.raw_headers += extra_headers
            await response(scope, receive, send)
            return
        del asked, joined
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": HEADERS + extra_headers})
            # Nothing reads the request's headers from here on (uvicorn reads
            # only the method): a browser's are ~2 KB a stream, held for hours.
            # Emptied in place, since the server holds the same list.
            _forget_headers(scope)
            del extra_headers
            await _write(subscriber, send, RETRY)
            await _catch_up(catch_up, subscriber, send)
            # Not held while live: its first history or resume chunk would stay
            # in memory for the life of the stream.
            del catch_up
            # Live. While this task is parked in wait(), the dispatcher and the
            # watchdog (pings) write to the client directly
            # (hub.stream.direct_write); the task is woken for what they cannot
            # do at once: buffered chunks, a write to finish, the end.
            subscriber.sender = send
            while True:
                chunk = subscriber.take()
                if chunk:
                    await _write(subscriber, send, chunk)
                    continue
                if subscriber.closed:
                    break
                woken_for = await subscriber.wait()
                if type(woken_for) is PendingSend:
                    await woken_for  # write_ticks was set when the write began
                    subscriber.write_ticks = NOT_WRITING
                    subscriber.idle_ticks = 0
        except (OSError, _ClientLeft):
            pass  # a vanished client: the stream just ends
        except REDIS_ERRORS as error:
            # Redis went away in the middle of a catch-up: end the stream
            # cleanly; the client reconnects with its last cursor.
            log.warning("redis lost during an event stream's catch-up: %s", type(error).__name__)
        await _write(subscriber, send, b"", more_body=False)
    except asyncio.CancelledError:
        # The watchdog cut off a stalled write: the response stays unfinished
        # and the server closes the connection. Any other cancel goes on up.
        if subscriber.closed != CLOSED_STALLED or task is None or task.uncancel():
            raise
    finally:
        dispatcher.remove(subscriber)
        if left is not None:
            left.cancel()
        release()


def _forget_headers(scope: Scope) -> None:
    headers = scope.get("headers")
    if isinstance(headers, list):
        headers.clear()


async def _write(subscriber: Subscriber, send: Send, data: bytes, *,
                 more_body: bool = True) -> None:
    """One write, watched: the watchdog cuts the stream off if it takes too long."""
    subscriber.write_ticks = 0
    await send({"type": "http.response.body", "body": data, "more_body": more_body})
    subscriber.write_ticks = NOT_WRITING
    subscriber.idle_ticks = 0


@dataclass(slots=True)
class CatchUp:
    """What a stream replays before it goes live, its first part already read."""

    frames: list[bytes]
    rest: AsyncIterator[bytes] | None = None
    last: bytes = b""


async def _start_catch_up(replica: Replica, asked: StreamRequest, joined: Cursor) -> CatchUp:
    """Read the first part of the catch-up (resume or history) from Redis."""
    redis, keys = replica.redis, replica.settings.keyspace
    frames: list[bytes] = []
    if asked.resume_from is not None:
        start, reset = await retention_check(redis, keys, asked.resume_from)
        if reset is not None:
            frames.append(stream_reset_frame(reset))
        chunks = replay_log(redis, keys, asked.stream_filter, start, joined)
    elif asked.include_history:
        chunks = replay_history(redis, keys, asked.stream_filter, joined)
    else:
        return CatchUp(frames)
    first = await anext(chunks, None)
    if first is not None:
        frames.append(first)
    last = cursor_mark(joined.encode()) if asked.resume_from is None else b""
    return CatchUp(frames, chunks if first is not None else None, last)


async def _catch_up(catch_up: CatchUp, subscriber: Subscriber, send: Send) -> None:
    for frame in catch_up.frames:
        await _write(subscriber, send, frame)
    if catch_up.rest is not None:
        async for chunk in catch_up.rest:
            if subscriber.closed:  # the client left (or the replica is stopping)
                raise _ClientLeft
            await _write(subscriber, send, chunk)
    if catch_up.last:
        await _write(subscriber, send, catch_up.last)


class _ClientLeft(Exception):
    pass


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
