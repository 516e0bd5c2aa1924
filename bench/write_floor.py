"""What one small write per subscriber per event costs on this machine.

nchan hands every message to every subscriber as its own ``writev`` (one SSE
frame per write). On loopback TCP most of that cost is the kernel's: the
send path, and the receiver's softirq and wake-up, both charged to the
writer. This measures that floor without nginx: ``subscribers`` loopback TCP
connections, a reader process draining them with epoll, and this process
writing one frame of ``frame_bytes`` to each connection in turn, ``events``
times. A server with nchan's design cannot deliver for less CPU than this
here, whatever its configuration, so ``bench/fanout.py`` prints it beside
nchan's figure. (The Python loop adds about 0.3 us per write.)

Run as ``python -m bench.write_floor [subscribers] [events]``; it prints one
JSON object: ``us_per_write`` (writer user+sys CPU per write) and
``writes_per_s``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections.abc import Sequence

FRAME_BYTES = 420  # an event's SSE frame in bench/fanout.py: id, event, ~300 B data


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _drain(readers: Sequence[socket.socket], want: int) -> None:
    """The reader process: read everything that arrives until ``want`` bytes."""
    selector = selectors.DefaultSelector()
    for sock in readers:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    got = 0
    while got < want:
        ready = selector.select(timeout=10)
        if not ready:
            break
        for key, _ in ready:
            with contextlib.suppress(BlockingIOError):
                got += len(key.fileobj.recv(65536))  # type: ignore[union-attr]


def measure(subscribers: int, events: int, frame_bytes: int = FRAME_BYTES) -> dict[str, float]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with socket.create_server(("127.0.0.1", 0), backlog=4096) as listener:
        address = listener.getsockname()
        clients, servers = [], []
        for _ in range(subscribers):
            clients.append(socket.create_connection(address))
            accepted, _ = listener.accept()
            accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            servers.append(accepted)
    pid = os.fork()
    if pid == 0:  # the reader
        for sock in servers:
            sock.close()
        _drain(clients, subscribers * events * frame_bytes)
        os._exit(0)
    for sock in clients:
        sock.close()
    head, body = b"x" * (frame_bytes // 2), b"y" * (frame_bytes - frame_bytes // 2)
    fds = [sock.fileno() for sock in servers]
    writev = os.writev
    cpu0, t0 = _cpu(), time.monotonic()
    for _ in range(events):
        for fd in fds:
            writev(fd, (head, body))  # blocking: a full socket buffer waits, as nginx would
    cpu, wall = _cpu() - cpu0, time.monotonic() - t0
    os.waitpid(pid, 0)
    for sock in servers:
        sock.close()
    writes = subscribers * events
    return {"subscribers": subscribers, "events": events,
            "us_per_write": cpu * 1e6 / writes, "writes_per_s": writes / wall}


def main(argv: Sequence[str]) -> int:
    subscribers = int(argv[0]) if argv else 1000
    events = int(argv[1]) if len(argv) > 1 else 300
    print(json.dumps(measure(subscribers, events)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
