"""ConnectionPool: the forwarder's HTTP/1.1 client, keep-alive connections per origin.

Why not httpx: profiled in ``callhub forward`` under load, one httpx POST cost
1.5 to 2.2 ms of CPU (httpcore's pool scans every connection it has on each
request and on each return; anyio and httpx's models come on top), a bare
POST on asyncio streams about 40 us; the forwarder's target is 5,000
deliveries/s in one process. A delivery is one shape of request (a POST of a
small body to a URL checked when the subscription was set, headers built by
callhub), so the client is small:

- per origin (scheme, host, port) a stack of idle connections: checkout and
  return are a ``pop`` and an ``append``; the most recently used goes first
  (warm, least likely closed by the receiver), one idle past ``idle_s`` is
  closed at checkout, one the receiver closed (EOF seen) is dropped;
- the request head and body in one ``write``; the answer parsed by
  ``ResponseReader`` (httptools), its body counted up to a limit and not kept;
- a kept-alive connection that turns out closed by the receiver (EOF or reset
  before a byte of the answer) is tried once more on a fresh connection: the
  receiver never saw that request, or closed without answering it; after any
  byte of the answer a failure is the attempt's;
- ``Connection: close`` (or HTTP/1.0 without keep-alive) closes it after the
  answer; redirects are answers like any other (the caller treats 3xx as a
  failed attempt);
- every new connection goes through ``checked_addresses``
  (``callhub.destination_guard``): the host resolved here, every address
  checked by the webhook address rule, and the connection made to a checked
  address (the next one if it fails), never to the name;
- TLS with the default context (certificates and host name verified), the
  URL's host as ``server_hostname`` (SNI and the name check), whatever
  address was connected to.

The caller bounds an attempt's time (``asyncio.timeout`` from connect to last
byte) and how many are in flight (the destination's gate); a cancelled
request closes its connection (it may be mid-answer).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Final, NamedTuple
from urllib.parse import urlsplit

from callhub.destination_guard import (
    USER_AGENT,
    DestinationRefused,
    DestinationUnresolved,
    Resolver,
    checked_addresses,
)
from callhub.webhooks import resolve_addresses
from workers.forward.http_response import MalformedResponse, ResponseReader

IDLE_S: Final = 4.0  # below the usual servers' keep-alive timeouts (uvicorn, nginx: 5 s+)
MAX_IDLE_PER_ORIGIN: Final = 256
READ_SIZE: Final = 64 * 1024
_URLS_KEPT: Final = 4096


class HttpError(Exception):
    """One request that got no (whole) answer; the class name says where it failed."""


class ConnectError(HttpError):
    pass


class WriteError(HttpError):
    pass


class ReadError(HttpError):
    pass


class RemoteProtocolError(HttpError):
    pass


class Answer(NamedTuple):
    status: int
    retry_after: str | None


class _Target(NamedTuple):
    """What a URL comes to for a request: its origin and the request's head start."""

    origin: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    head: str  # "POST <target> HTTP/1.1\r\nhost: ...\r\nuser-agent: ...\r\n"


def parse_target(url: str) -> _Target:
    """The origin and request line of an http(s) URL; ``ValueError`` for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL is not http(s) with a host")
    host = parts.hostname
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    literal = f"[{host}]" if ":" in host else host
    authority = literal if port == default else f"{literal}:{port}"
    head = f"POST {path} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: {USER_AGENT}\r\n"
    if "\0" in head or head.count("\n") != 3:
        raise ValueError("the URL has control characters")
    return _Target((scheme, host, port), host, port, scheme == "https", head)


def request_bytes(target: _Target, body: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """The whole request, head and body: one write. A header value with a line
    break (a header of its own smuggled in) or a NUL is refused."""
    lines = [target.head]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    head = "".join(lines)
    if head.count("\n") != len(headers) + 5 or head.count("\r") != len(headers) + 5 or \
            "\0" in head:
        raise ValueError("a header has a line break or a NUL in it")
    return head.encode() + body


class _Stale(Exception):
    """A kept-alive connection the receiver had closed: nothing of an answer came."""


class HttpConnection:
    __slots__ = ("_reader", "_response", "_writer", "idle_since", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 body_limit: int) -> None:
        self._reader = reader
        self._writer = writer
        self._response = ResponseReader(body_limit)
        self.idle_since = 0.0
        self.reused = False

    @property
    def closed_by_peer(self) -> bool:
        return self._reader.at_eof() or self._writer.is_closing()

    async def exchange(self, request: bytes) -> ResponseReader:
        """Send one request, read its answer (up to the body limit)."""
        response = self._response
        response.begin()
        reader = self._reader
        try:
            self._writer.write(request)
        except (ConnectionError, RuntimeError) as error:
            if self.reused:
                raise _Stale from error
            raise WriteError(str(error) or type(error).__name__) from None
        got = False
        while not response.done:
            try:
                data = await reader.read(READ_SIZE)
            except (ConnectionError, ssl.SSLError) as error:
                if self.reused and not got:
                    raise _Stale from error
                raise ReadError(str(error) or type(error).__name__) from None
            if not data:
                if self.reused and not got:
                    raise _Stale
                try:
                    response.feed_eof()
                except MalformedResponse as error:
                    raise RemoteProtocolError(str(error)) from None
                break
            got = True
            try:
                response.feed(data)
            except MalformedResponse as error:
                raise RemoteProtocolError(str(error)) from None
        return response

    def close(self) -> None:
        self._writer.close()


class ConnectionPool:
    def __init__(self, *, allow_private: bool, body_limit: int,
                 ssl_context: ssl.SSLContext | None = None,
                 resolve: Resolver = resolve_addresses, idle_s: float = IDLE_S,
                 max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN) -> None:
        self._allow_private = allow_private
        self._body_limit = body_limit
        self._ssl = ssl_context
        self._resolve = resolve
        self._idle_s = idle_s
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], deque[HttpConnection]] = {}
        self._targets: dict[str, _Target] = {}
        self._busy: set[HttpConnection] = set()
        self.opened = 0  # connections made, for tests and the bench

    def target(self, url: str) -> _Target:
        found = self._targets.get(url)
        if found is None:
            found = parse_target(url)
            if len(self._targets) >= _URLS_KEPT:
                self._targets.clear()
            self._targets[url] = found
        return found

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> Answer:
        target = self.target(url)
        request = request_bytes(target, body, headers)
        connection = self._checkout(target.origin)
        if connection is not None:
            try:
                return await self._exchange(target, connection, request)
            except _Stale:
                pass  # the receiver closed it while idle: once more, on a fresh one
        connection = await self._connect(target)
        try:
            return await self._exchange(target, connection, request)
        except _Stale:  # pragma: no cover - a fresh connection is never reused
            raise ReadError("the receiver closed the connection") from None

    async def _exchange(self, target: _Target, connection: HttpConnection,
                        request: bytes) -> Answer:
        self._busy.add(connection)
        kept = False
        try:
            response = await connection.exchange(request)
            answer = Answer(response.status, response.retry_after)
            kept = response.reusable
            return answer
        finally:
            self._busy.discard(connection)
            if kept:
                self._return(target.origin, connection)
            else:
                connection.close()

    def _checkout(self, origin: tuple[str, str, int]) -> HttpConnection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_allowed = time.monotonic() - self._idle_s
        while idle:
            connection = idle.pop()
            if connection.idle_since >= oldest_allowed and not connection.closed_by_peer:
                return connection
            connection.close()
        return None

    def _return(self, origin: tuple[str, str, int], connection: HttpConnection) -> None:
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        connection.idle_since = time.monotonic()
        connection.reused = True
        idle.append(connection)
        if len(idle) > self._max_idle:
            idle.popleft().close()  # the longest idle

    async def _connect(self, target: _Target) -> HttpConnection:
        try:
            addresses = await checked_addresses(target.host, target.port,
                                                allow_private=self._allow_private,
                                                resolve=self._resolve)
        except (DestinationRefused, DestinationUnresolved) as error:
            raise ConnectError(str(error)) from None
        context: ssl.SSLContext | None = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        failure: BaseException | None = None
        for address in addresses:  # the resolver's order; the next one if one fails
            try:
                reader, writer = await asyncio.open_connection(
                    str(address), target.port, ssl=context,
                    server_hostname=target.host if context is not None else None,
                    limit=READ_SIZE)
            except OSError as error:  # refused, unreachable, TLS (ssl.SSLError is one)
                failure = error
                continue
            self.opened += 1
            return HttpConnection(reader, writer, self._body_limit)
        raise ConnectError(str(failure) or type(failure).__name__)

    async def aclose(self) -> None:
        connections = [c for idle in self._idle.values() for c in idle] + list(self._busy)
        self._idle.clear()
        for connection in connections:
            connection.close()
