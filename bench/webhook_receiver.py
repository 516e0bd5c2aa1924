"""The webhook receiver of ``bench/forward.py``: raw HTTP/1.1 on uvloop, in one process.

Run by the benchmark as ``python -m bench.webhook_receiver --port N`` (on
127.0.0.1). It is built so that it is not what limits the rates measured:
no framework, no per-request task, one ``transport.write`` per read, keep-alive
and pipelining; the benchmark measures its ceiling and its CPU share and
prints both.

Every POST outside the control paths is a delivery. It is answered 200 once
its Standard Webhooks signature verifies (``callhub.signing``, with any
secret given to ``POST /_reset`` so far: a subscription deleted a moment ago
may still have a POST in flight), else 400, as a user's backend would. For
each one it takes the receipt time (``CLOCK_MONOTONIC`` ns, the same clock in
every process of the machine) and the commit time the event carries in its
``event_id`` (``L`` and the publisher's monotonic ns, as ``bench/fanout.py``
stamps its events). Deliveries of events committed before the last reset's
``since_ns`` are only counted (``stale``: the tail of an earlier phase); the
others are recorded, and checked for what a receiver relies on: no
webhook-id twice, each call's ``seq`` increasing.

Control paths:

- ``POST /_reset``: ``{"secret": "whsec_...", "since_ns": N}``; forgets
  everything received so far.
- ``GET /_stats``: counts so far (JSON), cheap enough to poll.
- ``GET /_dump``: the counts and, per delivery recorded, its receipt and commit
  times (``array('q')`` bytes, base64 in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hmac
import re
import signal
import sys
import time
from array import array
from typing import Final, cast

import msgspec
import uvloop

from callhub.signing import secret_key, sign

HOST: Final = "127.0.0.1"
OK: Final = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
BAD: Final = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
COMMIT_NS: Final = re.compile(rb'"event_id":"L(\d+)"')
SESSION: Final = re.compile(rb'"session_id":"([^"]*)"')
SEQ: Final = re.compile(rb'"seq":(\d+)')
MAX_HEAD: Final = 64 * 1024


class Reset(msgspec.Struct):
    secret: str
    since_ns: int = 0


class Stats(msgspec.Struct):
    received: int = 0  # deliveries answered 200 and recorded
    bad_signatures: int = 0
    duplicates: int = 0  # a webhook-id seen before (a redelivery)
    out_of_order: int = 0  # a call's seq not above the one before (not a duplicate)
    untimed: int = 0  # deliveries without a commit time in their event_id (not recorded)
    stale: int = 0  # deliveries of events committed before since_ns (not recorded)
    connections: int = 0  # connections open now


class Dump(msgspec.Struct):
    stats: Stats
    receipt_ns: bytes  # array('q'): when each delivery recorded arrived
    commit_ns: bytes  # array('q'): the commit time it carries


class State:
    def __init__(self) -> None:
        self.keys: list[bytes] = []  # the newest first
        self.since_ns = 0
        self.stats = Stats()
        self.reset()

    def reset(self) -> None:
        self.stats = Stats(connections=self.stats.connections)
        self.receipts: array[int] = array("q")
        self.commits: array[int] = array("q")
        self.seen: set[bytes] = set()
        self.last_seq: dict[bytes, int] = {}

    def deliver(self, headers: dict[bytes, bytes], body: bytes, now: int) -> bytes:
        message = headers.get(b"webhook-id", b"")
        try:
            timestamp = int(headers.get(b"webhook-timestamp", b""))
        except ValueError:
            timestamp = -1
        offered = headers.get(b"webhook-signature", b"").split(b" ")
        text = message.decode()
        if not any(hmac.compare_digest(sign(key, text, timestamp, body).encode(), one)
                   for key in self.keys for one in offered):
            self.stats.bad_signatures += 1
            return BAD
        stats = self.stats
        stamp = COMMIT_NS.search(body)
        if stamp is None:
            stats.untimed += 1
            return OK
        committed = int(stamp.group(1))
        if committed < self.since_ns:
            stats.stale += 1
            return OK
        stats.received += 1
        if message in self.seen:
            stats.duplicates += 1
        else:
            self.seen.add(message)
            session, seq = SESSION.search(body), SEQ.search(body)
            if session is not None and seq is not None:
                number = int(seq.group(1))
                if number <= self.last_seq.get(session.group(1), 0):
                    stats.out_of_order += 1
                else:
                    self.last_seq[session.group(1)] = number
        self.receipts.append(now)
        self.commits.append(committed)
        return OK

    def control(self, method: bytes, path: bytes, body: bytes) -> bytes | None:
        """The answer to a control request, or None if it is a delivery."""
        if method == b"POST" and path == b"/_reset":
            try:
                reset = msgspec.json.decode(body, type=Reset)
                key = secret_key(reset.secret)
            except (msgspec.DecodeError, ValueError):
                return BAD
            if key not in self.keys:
                self.keys.insert(0, key)
            self.since_ns = reset.since_ns
            self.reset()
            return OK
        if method == b"GET" and path in (b"/_stats", b"/_dump"):
            value: msgspec.Struct = self.stats if path == b"/_stats" else Dump(
                self.stats, self.receipts.tobytes(), self.commits.tobytes())
            data = msgspec.json.encode(value)
            return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(data), data))
        if method != b"POST":
            return b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        return None


class Connection(asyncio.Protocol):
    """One keep-alive connection: requests parsed as they come, answered in order."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.state.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        answers: list[bytes] = []
        start = 0
        now = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                if len(buffer) - start > MAX_HEAD:
                    return self._fail()
                break
            lines = buffer[start:end].split(b"\r\n")
            method, _, rest = lines[0].partition(b" ")
            path = rest.partition(b" ")[0]
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"transfer-encoding" in headers:
                return self._fail()  # every sender here gives a content-length
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                return self._fail()
            body_end = end + 4 + length
            if len(buffer) < body_end:
                break
            body = buffer[end + 4:body_end]
            start = body_end
            answer = self.state.control(method, path, body)
            if answer is None:
                if not now:
                    now = time.monotonic_ns()  # one reading per read: same arrival
                answer = self.state.deliver(headers, body, now)
            answers.append(answer)
        self.buffer = buffer[start:]
        if answers and self.transport is not None:
            self.transport.write(b"".join(answers))

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD)
            self.transport.close()
        self.buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.state.stats.connections -= 1


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    state = State()
    server = await loop.create_server(lambda: Connection(state), HOST, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    gc.freeze()  # what is alive now is never collected; fewer, shorter collections later
    uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
