"""EmbeddedRedis: an in-memory Redis inside the process, for ``callhub demo``.

fakeredis's ``TcpFakeServer`` speaks the Redis protocol on a loopback port and
runs Lua and blocking XREAD, which is everything callhub needs from Redis. So
the demo's hub and worker connect to it by URL exactly as they would to a real
server: the demo exercises the same code paths as production, only the store
is a toy (no persistence, no memory limits, pure-Python speed).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class EmbeddedRedis:
    """A fakeredis TCP server on 127.0.0.1, served by a background thread."""

    def __init__(self, port: int = 0) -> None:
        from fakeredis import TcpFakeServer  # only the demo pays for the import

        self._server = TcpFakeServer(("127.0.0.1", port or _free_port()), server_type="redis")
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="embedded-redis", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"redis://{host!s}:{port}/0"

    def start(self) -> EmbeddedRedis:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
