"""A raw HTTP/1.1 server on 127.0.0.1 whose answers a test writes byte for byte.

For the forwarder's own HTTP client: each request it reads (head and a
Content-Length body) is answered by ``script(n)`` — ``n`` counts the requests
across connections — with an ``Answer``: the bytes to send (in pieces, to
split an answer across reads), and whether to close the connection after
them, or before answering at all (a kept-alive connection the server dropped).
It counts connections and records requests; the test stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from tests.support.local_http import Request, read_request


@dataclass(frozen=True)
class Answer:
    pieces: tuple[bytes, ...] = (b"HTTP/1.1 204 No Content\r\n\r\n",)
    close_after: bool = False
    close_before: bool = False  # read the request, then close without a byte
    delay_s: float = 0.0


@dataclass
class ScriptedServer:
    script: Callable[[int], Answer]
    port: int = 0
    connections: int = 0
    requests: list[Request] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request = await read_request(reader)
                answer = self.script(len(self.requests))
                self.requests.append(request)
                if answer.close_before:
                    break
                if answer.delay_s:
                    await asyncio.sleep(answer.delay_s)
                for piece in answer.pieces:
                    writer.write(piece)
                    await writer.drain()
                if answer.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def scripted_server(script: Callable[[int], Answer], *,
                          ssl_context: ssl.SSLContext | None = None
                          ) -> AsyncIterator[ScriptedServer]:
    state = ScriptedServer(script)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=ssl_context)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)
