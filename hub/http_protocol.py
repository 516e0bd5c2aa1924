"""GuardedHttpProtocol: uvicorn's httptools protocol with limits on a request's head.

uvicorn (with httptools) keeps reading a request's headers for as long as the
client sends them and holds them all: 10 connections sending 16 MiB of headers
each took a replica from 72 to 298 MB, and a connection that sends its head a
byte at a time (slowloris), or nothing at all, is held for ever. A replica must
not be that cheap to tie up, so this protocol

- answers ``431`` and closes once a head is over ``MAX_HEAD_BYTES`` (nginx's
  default ``large_client_header_buffers`` is 4 × 8 KiB: 64 KiB is generous);
- closes a connection whose head is not complete ``CALLHUB_HEADER_TIMEOUT``
  (10 s) after the connection opened or its previous response ended (the
  keep-alive timeout still closes an idle kept-alive connection sooner);
- answers ``503`` with the JSON error body and ``Retry-After`` beyond the
  configured connection cap (``limit_concurrency``), where uvicorn would answer
  plain text.

An event stream keeps its connection open for hours, mostly idle, so the
protocol also holds less per connection than uvicorn's (docs/performance.md,
"Idle subscriber memory"): its instance ``__dict__`` keeps CPython's shared
keys, its two Events have no deque (``_Signal``), and the pipeline deque and
the request parser exist only while they are needed.

Otherwise it changes nothing: it subclasses uvicorn's own protocol and is
named to uvicorn by import path (``callhub serve``), so every worker process
loads it, and reads its setting from the environment once per process, as the
app factory does (``callhub serve`` has checked the settings before uvicorn
starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections import deque
from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from callhub.settings import load_settings
from hub.errors import ErrorBody, ErrorDetail

MAX_HEAD_BYTES = 64 * 1024
IMPORT_PATH = "hub.http_protocol:GuardedHttpProtocol"

_encoder = msgspec.json.Encoder()


def _answer(status: bytes, code: str, message: str, extra: bytes = b"") -> bytes:
    body = _encoder.encode(ErrorBody(ErrorDetail(code=code, message=message)))
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n" + extra +
            b"connection: close\r\n\r\n" + body)


_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", "headers_too_large",
                     f"the request's head is over {MAX_HEAD_BYTES // 1024} KiB")
_FULL = _answer(b"503 Service Unavailable", "unavailable",
                "this replica has all the connections it takes; retry, or another replica",
                b"retry-after: 2\r\n")


def _parser(protocol: HttpToolsProtocol) -> httptools.HttpRequestParser:
    """A request parser set up as uvicorn's ``HttpToolsProtocol.__init__`` sets up its own."""
    parser = httptools.HttpRequestParser(protocol)
    with contextlib.suppress(AttributeError):  # httptools < 0.6.3
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


@functools.cache
def _head_timeout_s() -> float:
    return load_settings(os.environ).header_timeout_ms / 1000


class _Signal:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``, without its deque.

    uvicorn gives every request an Event (the cycle's ``message_event``, which
    ``receive()`` waits on) and every connection another (flow control's
    "writable"). An Event allocates a ``collections.deque`` at once, and an
    empty deque is 760 bytes (one 64-slot block), so an open stream held
    1.5 KB of empty deques. Here a lone waiter is held as it is (a list only
    when there are more), and ``wait()`` hands out the waiter's future itself
    rather than a coroutine around it: an idle stream's ``receive()`` waits
    on one future and nothing more. The behaviour is the Event's: ``set``
    wakes every waiter, a waiter woken before a ``clear`` still returns, and
    a waiter that is cancelled (or abandoned) leaves the others waiting; it
    is let go at the next ``set`` or ``wait``.
    """

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: asyncio.Future[bool] | list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters if isinstance(waiters, list) else (waiters,):
                if waiter is not None and not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    def wait(self) -> asyncio.Future[bool]:
        """A future that is done (True) once the signal is set."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._value:
            waiter.set_result(True)
            return waiter
        waiters = self._waiters
        if waiters is None or (not isinstance(waiters, list) and waiters.done()):
            self._waiters = waiter
        else:
            others = waiters if isinstance(waiters, list) else [waiters]
            self._waiters = [*(w for w in others if not w.done()), waiter]
        return waiter


class _HeadWatch:
    """A request head being read: its byte count and its timer.

    Kept off the protocol's own ``__dict__``: uvicorn's protocol already sets
    28 attributes, and CPython shares the keys of instance dicts only up to 30
    (``SHARED_KEYS_MAX_SIZE``). Two more attributes of our own un-shared every
    connection's dict, about 1.3 KB per connection for as long as it stays
    open (docs/performance.md). Released once the head is complete, so an
    open stream holds none of it.
    """

    __slots__ = ("bytes", "timer")

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self.bytes = 0
        self.timer = timer


_NO_PIPELINE: tuple[()] = ()  # empty and false, as uvicorn's deque is when it is empty


class GuardedHttpProtocol(HttpToolsProtocol):
    # The head being read, None between requests; the one attribute this
    # subclass adds to an instance (see _HeadWatch).
    _head: _HeadWatch | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The cap is checked here (JSON answer, exactly the number configured,
        # read from the config: no attribute of our own); uvicorn's own check
        # would answer plain text, one connection early.
        self.limit_concurrency = None
        # Requests pipelined behind the one in flight: rare (browsers and
        # EventSource never pipeline), and an empty deque is 760 bytes, held
        # for the life of every connection. Made when a request is pipelined.
        self.pipeline = _NO_PIPELINE  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow._is_writable_event = _Signal(True)  # type: ignore[assignment]
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # dropped between requests: the next one begins
            self.parser = _parser(self)
        head = self._head
        if head is not None:
            head.bytes += len(data)
        super().data_received(data)
        if (head is not None and self._head is head
                and head.bytes > MAX_HEAD_BYTES and not self.transport.is_closing()):
            self._refuse(_TOO_LARGE)
            return
        self._drop_parser_between_requests()

    def _drop_parser_between_requests(self) -> None:
        """Let the parser go while the request in flight has been read to its end.

        A parser is 0.9 KB (its C state and a bound method per callback), held
        for the whole life of an event stream whose request was read long
        ago. At a request's end (and with nothing of a next one begun: a new
        request makes a new scope) llhttp's state is that of a new parser, so
        a new one is made when more data arrives. Only on a kept-alive
        connection: on one that closes after this response, uvicorn's parser
        rejects what follows, a new one would not.
        """
        cycle = self.cycle
        if (cycle is not None and not cycle.more_body and cycle.scope is self.scope
                and cycle.keep_alive and self.parser is not None
                and not self.transport.is_closing()):
            self.parser = None  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        self._head_done()
        cap = self.config.limit_concurrency
        if cap is not None and (len(self.connections) > cap or len(self.tasks) >= cap):
            self._refuse(_FULL)
            return
        existing = self.cycle
        if existing is not None and not existing.response_complete and not self.pipeline:
            self.pipeline = deque()  # this request waits for the one in flight
        super().on_headers_complete()
        if self.cycle is not existing:  # a new request (not an upgrade)
            self.cycle.message_event = _Signal()  # type: ignore[assignment]
            # The scope has the headers; this reference to them would outlive
            # any copy the app makes (Starlette's Headers replaces the scope's
            # list with its own) and any list the app empties once it no longer
            # needs them (the event stream does). A fresh list takes trailers.
            self.headers = []

    def on_message_complete(self) -> None:
        if self.cycle is not None:  # None when the head was refused
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()  # the next request on a kept-alive connection

    def _await_head(self) -> None:
        self._head_done()
        self._head = _HeadWatch(self.loop.call_later(_head_timeout_s(), self._head_timed_out))

    def _head_done(self) -> None:
        head = self._head
        if head is not None:
            head.timer.cancel()
            self._head = None

    def _head_timed_out(self) -> None:
        self._head = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        self._head_done()
        self.transport.write(answer)
        self.transport.close()
