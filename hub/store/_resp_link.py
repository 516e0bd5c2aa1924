"""A pipelined Redis link: many HGETALLs in flight on one socket, replies FIFO.

Why not redis-py's own path: Get Call is one HGETALL, and redis-py's asyncio
command path cost more than everything else the request does. Measured on
the 2-core benchmark machine (loopback redis-server, uvloop; CPU per HGETALL
with N reads in flight, best of three; the machine is shared, so +-30%):

==============================================  =====  =====  =====  ======
path                                             N=32   N=10   N=3    N=1
==============================================  =====  =====  =====  ======
redis-py pooled client, one pipeline per turn    17 µs  25 µs  45 µs  103 µs
redis-py ``Connection``, one reader task         12 µs  17 µs  34 µs   79 µs
redis-py's stream + ``hiredis.Reader``            5 µs   6 µs   9 µs   20 µs
this module (``PipelinedHashReader`` in use)      5 µs   8 µs  15 µs   40 µs
==============================================  =====  =====  =====  ======

(A bare ``asyncio.Protocol`` on a socket of its own measured 3 µs at N=32; on
redis-py's socket this link costs about 1 µs more per read, and its dicts,
deadlines and checks another 1 µs: cheap enough to keep redis-py's connect.)
Under ``wrk -c32``, ``callhub serve`` spent about 110 µs of CPU per Get Call
with the pooled pipeline and about 85 µs with this link and a leaner view
(the bare route in the same app and process set-up: about 52 µs), which took
Get Call from about 0.48 to 0.61-0.64 of that route's requests/s
(``bench/read_api.py``). The pooled path pays, per command, a pool checkout, a
``Pipeline`` and its command stack, ``pack_command``, a ``Retry`` wrapper, a
timeout context and an ``await`` per reply; here a command is one bytes
formatting, one future and one deque append, and a whole chunk of replies is
parsed in one ``data_received`` call.

What this module does, and nothing more: write commands (those asked during
one turn of the event loop leave in one ``write``), parse replies with
hiredis, and hand each to the oldest waiter. Connecting (TLS, ACL user and
password, database, protocol handshake) stays redis-py's job: the link takes
over the transport of a connection redis-py has already set up (``adopt``).

Failures never hang a waiter: a lost connection, an unparsable reply or a
Redis that stops answering for ``timeout_s`` (one timer per link, checked
against the oldest command in flight) fails every waiter with a redis-py
``ConnectionError`` or ``TimeoutError``, which the API answers with 503.
A waiter that is cancelled keeps its place in the queue, so the replies after
it still reach their own waiters.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Fields = dict[bytes, bytes]


class RedisLink(asyncio.Protocol):
    """One connection's worth of pipelined HGETALLs (see the module docstring)."""

    def __init__(self, timeout_s: float, on_lost: Callable[[RedisLink], None]) -> None:
        self._timeout_s = timeout_s
        self._on_lost = on_lost
        self._parser = hiredis.Reader()
        self._waiters: deque[tuple[asyncio.Future[Fields], float]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._previous: asyncio.BaseProtocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failure: Exception | None = None
        self._loop = asyncio.get_running_loop()

    @property
    def open(self) -> bool:
        return self._transport is not None and self._failure is None

    @property
    def in_flight(self) -> int:
        """Commands written (or about to be) whose replies have not arrived."""
        return len(self._waiters)

    def adopt(self, transport: asyncio.Transport) -> None:
        """Become the protocol of ``transport``, a connection redis-py set up.

        Its previous protocol (redis-py's stream) still hears about the close
        (``connection_lost``), so redis-py's own ``disconnect`` of that
        connection completes as usual.
        """
        self._previous = transport.get_protocol()
        transport.set_protocol(self)
        self._transport = transport

    def hgetall(self, key: bytes) -> asyncio.Future[Fields]:
        loop = self._loop
        future: asyncio.Future[Fields] = loop.create_future()
        if self._failure is not None or self._transport is None:
            future.set_exception(self._failure or RedisConnectionError("Redis link is closed"))
            return future
        outgoing = self._outgoing
        if not outgoing:
            loop.call_soon(self._flush)
        outgoing.append(b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(key), key))
        now = loop.time()
        self._waiters.append((future, now))
        if self._timer is None:
            self._timer = loop.call_at(now + self._timeout_s, self._check)
        return future

    # -- asyncio.Protocol ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        waiters = self._waiters
        try:
            while (reply := parser.gets()) is not False:
                if not waiters:
                    raise hiredis.ProtocolError("a reply nobody asked for")
                future, _ = waiters.popleft()
                if future.done():  # its request was cancelled meanwhile
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_reply_error(str(reply)))
                else:
                    future.set_result(_fields(reply))
        except hiredis.ProtocolError as error:
            self._fail(RedisConnectionError(f"unreadable reply from Redis: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        self._transport = None
        if self._previous is not None:
            previous, self._previous = self._previous, None
            previous.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return False  # close the transport: Redis does not half-close

    # -- internals ----------------------------------------------------------

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.open and outgoing:
            assert self._transport is not None
            self._transport.write(b"".join(outgoing))

    def _check(self) -> None:
        """The one timer: fail the link if the oldest command waited too long."""
        self._timer = None
        if not self._waiters or not self.open:
            return
        deadline = self._waiters[0][1] + self._timeout_s
        if self._loop.time() >= deadline:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self._timeout_s:g}s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check)

    def _fail(self, error: Exception) -> None:
        """Fail every waiter, close the transport, tell the owner (once)."""
        if self._failure is None:
            self._failure = error
            self._on_lost(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._outgoing.clear()
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()


def _fields(reply: Any) -> Fields:
    if isinstance(reply, dict):  # RESP3 (protocol=3 in the Redis URL)
        return reply
    pairs = iter(reply)
    return dict(zip(pairs, pairs, strict=False))  # strict=True costs a third more


def _reply_error(message: str) -> Exception:
    if message.startswith("LOADING"):
        return BusyLoadingError(message)  # a ConnectionError: retry later (503)
    return ResponseError(message)
