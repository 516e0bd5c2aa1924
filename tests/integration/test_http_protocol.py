"""A replica's connections: heads are bounded in size and time, connections in number.

Against ``callhub serve`` (the protocol is what it hands uvicorn), with raw
sockets, as an attacker would send.
"""

from __future__ import annotations

import socket
import time

import msgspec

from tests.support.polling import wait_until
from tests.support.processes import CallhubProcess, start_hub


def _connect(hub: CallhubProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(hub.url.rsplit(":", 1)[1])), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(li for li in status if li.startswith("VmRSS:")).split()[1]) * 1024


def _json_body(answer: bytes) -> dict[str, dict[str, str]]:
    body: dict[str, dict[str, str]] = msgspec.json.decode(answer.partition(b"\r\n\r\n")[2])
    return body


def test_a_head_over_64_kib_is_a_431_and_costs_no_memory(redis_url: str) -> None:
    hub = start_hub(redis_url)
    try:
        before = _rss(hub.process.pid)
        answers = []
        for _ in range(10):
            sock = _connect(hub)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            try:
                for _ in range(256):  # up to 16 MiB of one endless header line
                    sock.sendall(b"X-Pad: " + b"a" * 65536 + b"\r\n")
            except OSError:
                pass  # the replica closed the connection: what it should do
            answers.append(_read_all(sock))
            sock.close()
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
            assert _json_body(answer)["error"]["code"] == "headers_too_large"
        assert _rss(hub.process.pid) - before < 16 * 2**20
    finally:
        hub.stop()


def test_a_head_that_never_ends_is_closed_after_the_header_timeout(redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_HEADER_TIMEOUT": "1s"})
    try:
        silent, slow = _connect(hub), _connect(hub)
        started = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")

        def closed(sock: socket.socket) -> bool:
            return sock.recv(1) == b""

        for sock in (silent, slow):
            sock.settimeout(0.2)
            wait_until(lambda s=sock: closed(s), timeout=10,  # type: ignore[misc]
                       what="the replica to close a connection whose head never came")
        assert time.monotonic() - started >= 0.9
        # A well-behaved request on a fresh connection is served as before.
        fine = _connect(hub)
        fine.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert _read_all(fine).startswith(b"HTTP/1.1 200 ")
    finally:
        hub.stop()


def test_beyond_the_connection_cap_a_json_503(redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_MAX_CONNECTIONS": "3"})
    held = []
    try:
        for _ in range(3):
            sock = _connect(hub)
            sock.sendall(b"GET /v1/calls/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.recv(12)  # the stream's status line: it holds its connection
            held.append(sock)
        extra = _connect(hub)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = _read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:80]
        assert b"retry-after: 2" in answer.lower()
        assert _json_body(answer)["error"]["code"] == "unavailable"
    finally:
        for sock in held:
            sock.close()
        hub.stop()
