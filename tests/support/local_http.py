"""A bare HTTP/1.1 server on 127.0.0.1 in the test's own event loop, for the
connect-time guard's tests: it counts the connections it accepts (so a test
asserts that none reached it), records each request and answers 204, keeping
the connection alive unless ``close_each``. With an ``ssl_context`` it speaks
TLS and records the SNI name each client sent.

Also ``FakeDns``: the running loop's ``getaddrinfo`` answering chosen addresses
for one host name (one answer per lookup, the last one repeated), as a
DNS-rebinding name would; every other name resolves as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request:
    """One request off a connection: its head, and a Content-Length body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    first, *lines = head.split("\r\n")
    method, target, _ = first.split(" ", 2)
    headers = {name.strip().lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, target, headers, body)


@dataclass
class LocalServer:
    port: int = 0
    close_each: bool = False
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                self.requests.append(await read_request(reader))
                close = b"connection: close\r\n" if self.close_each else b""
                writer.write(b"HTTP/1.1 204 No Content\r\n" + close + b"\r\n")
                await writer.drain()
                if self.close_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def local_http_server(ssl_context: ssl.SSLContext | None = None, *,
                            close_each: bool = False) -> AsyncIterator[LocalServer]:
    state = LocalServer(close_each=close_each)
    if ssl_context is not None:
        def record_sni(_: object, name: str | None, __: ssl.SSLContext) -> None:
            state.sni_names.append(name)
        ssl_context.sni_callback = record_sni
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=ssl_context)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


class FakeDns:
    """``host`` answers ``answers[0]``, then ``answers[1]``, ... (the last one
    repeated); ``lookups`` counts the times it was asked."""

    def __init__(self, host: str, *answers: str) -> None:
        self.host = host
        self.answers = list(answers)
        self.lookups = 0
        self._real: Any = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeDns:
        loop = asyncio.get_running_loop()
        self._real = loop.getaddrinfo
        monkeypatch.setattr(loop, "getaddrinfo", self.getaddrinfo)
        return self

    async def getaddrinfo(self, host: object, port: object, *args: Any,
                          **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != self.host:
            return list(await self._real(host, port, *args, **kwargs))
        answer = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [answer_info(answer, int(port) if isinstance(port, int | str) else 0)]


def answer_info(address: str, port: int) -> tuple[Any, ...]:
    """One ``getaddrinfo`` result for ``address`` (as a resolver gives it)."""
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
