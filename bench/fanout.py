"""Fan-out benchmark: callhub's event stream beside nchan and a naive sse-starlette app.

Run as ``.venv/bin/python -m bench.fanout [--quick]`` (needs ``redis-server``,
and ``nginx`` with ``libnginx-mod-nchan`` for the nchan peer).

Three peers are fed the same events in the same run, one after the other:

- callhub: one ``callhub serve`` process. Events are committed with the
  workers' ``CallPublisher`` to a private redis-server; the hub's shard reader
  picks them up and fans them out.
- nchan: an nginx (one worker process, like the one callhub process) started
  here with a generated config: an ``nchan_publisher`` location and an
  ``nchan_subscriber eventsource`` one, in nchan's memory mode (no Redis;
  ``--nchan-storage redis`` for the Redis-backed mode), its best
  configuration measured here (see docs/performance.md, "The nchan peer":
  no other setting tried moved its cost beyond the noise). The same event JSON bytes are POSTed
  to it over one pipelined HTTP/1.1 keep-alive connection (raw asyncio), one
  channel ``all`` for the all-events case and one channel per session for the
  per-session case; the event type goes in ``X-EventSource-Event`` so its
  frames carry ``event:`` like the hub's. nchan writes every message to every
  subscriber as its own ``writev``; what one such write costs on this machine
  (``bench/write_floor.py``, without nginx) is printed beside it.
- naive: ``bench/naive_app.py`` under uvicorn: sse-starlette's
  ``EventSourceResponse`` with one blocking XREAD loop per client on the same
  shard log, fed by the same commits as callhub.

Subscribers come from client processes (two, or ``--clients N``; forked at
start, reused throughout, the same for every peer) that speak HTTP/1.1 over
raw asyncio sockets (uvloop protocols) and count ``data:`` lines up to the
last complete frame of each read: no per-event decoding, except a regex for
the publish time in the latency phase.

Per peer, subscriber count (100 and 1,000) and filter (all events, or one
session per subscriber with sessions spread evenly, 10 subscribers each):

- burst: a fixed burst of events published as fast as the publisher can;
  deliveries/s = deliveries / (time from the first publish until every
  subscriber has everything it should), bounded by a deadline.
- latency: a steady rate (200 events/s for 5 s); each event carries its
  publish time (CLOCK_MONOTONIC ns, system-wide) in ``event_id``; the client
  takes commit->receive latency per delivery. Deliveries missing when the
  drain time ends count as infinitely late in the percentiles.
- server CPU (utime+stime from /proc/PID/stat) per delivery during the
  burst, and RSS (/proc/PID/status VmRSS) after it, with the peak (VmHWM).

Each phase runs against a fresh server and a flushed Redis, so the three peers
get the same events (byte-identical in the bursts; in the latency phase they
differ only in the publish time they carry). Then: memory per idle subscriber
(RSS before and after opening 10,000 idle streams) for every peer, and
callhub's catch-up rate for a client that resumes with Last-Event-ID after
50,000 events. The targets of the issue are printed beside the figures.

``python -m bench.fanout_capacity`` is the capacity mode: callhub and nchan at
200 events/s with more and more subscribers until one falls behind. It runs
this module's ``main`` with its own ``Mode`` in place of the phases above
(it imports this module; this one does not import it).

Options: ``--peers callhub,nchan`` and ``--subs 1000`` narrow the run,
``--linger 0,2`` adds callhub peers run with those ``CALLHUB_STREAM_LINGER``
values (``ch-0ms``: no coalescing under load),
``--baseline DIR`` adds the replica of an earlier checkout as the peer ``base``,
``--no-idle`` and ``--no-catch-up`` skip those phases, ``--py-spy DIR`` records
callhub's CPU profile per phase and prints its hottest frames. The full run
takes about 6 minutes on 2 cores; ``--quick`` (50 subscribers, small bursts)
under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol, cast

import httpx
import uvloop

from bench.harness import (
    BenchError,
    LocalRedis,
    LocalRedisCluster,
    Server,
    cpu_seconds,
    free_port,
    memory_kb,
    percentile,
    summarize_profile,
)
from bench.write_floor import FRAME_BYTES
from callhub import events as ev
from callhub.cli.status_line import StatusLine
from callhub.connections import connect_client
from callhub.settings import Settings
from workers.commit.publisher import CallPublisher

HOST: Final = "127.0.0.1"
LOG_KEY: Final = "callhub:{0}:log"
T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
EVENT_BYTES: Final = 300
SUBS_PER_SESSION: Final = 10
CLIENT_PROCESSES: Final = 2  # the default of --clients
CLIENT_BOUND: Final = 0.85  # a client share at which the client may be the limit
PUBLISH_BATCH: Final = 256  # events per commit_many (bench/ingest.py's default)
NCHAN_WINDOW: Final = 64  # POSTs per pipelined write to nchan
NCHAN_MODULE: Final = "/usr/lib/nginx/modules/ngx_nchan_module.so"
NCHAN_STORAGES: Final = ("memory", "redis")

TARGET_VS_NCHAN: Final = 0.5
TARGET_VS_NAIVE: Final = 10.0
TARGET_P99_MS: Final = 50.0
TARGET_IDLE_KB: Final = 10.0  # nchan's 10.0 KB (issue 19)
TARGET_VS_SINGLE: Final = 0.7  # callhub on a 3-master cluster / on one node

LATENCY_RE: Final = re.compile(rb'"event_id":"L(\d+)"')
EVENT_ID_RE: Final = re.compile(rb'"event_id":"([^"]+)"')
DATA_LINE: Final = b"\ndata:"


@dataclass(frozen=True)
class Plan:
    subscriber_counts: tuple[int, ...]
    burst_all: int  # events in the all-events burst
    burst_session: int  # events in the per-session burst
    rate: int  # events/s in the latency phase
    rate_seconds: float
    drain_s: float  # how long after the last publish the latency phase waits
    deadline_s: float  # burst: first publish until everything must be in
    idle: int  # idle subscribers for the memory measure
    idle_cpu_s: float  # how long the idle streams' CPU is measured (a ping round: 15 s)
    catch_up: int  # events committed while the resuming client is away


FULL = Plan((100, 1000), 2000, 10_000, 200, 5.0, 5.0, 20.0, 10_000, 15.0, 50_000)
QUICK = Plan((50,), 300, 600, 100, 2.0, 2.0, 8.0, 300, 2.0, 3000)


# ---------------------------------------------------------------------------
# /proc readings


def redis_cpu(peer: Peer) -> float:
    """The CPU seconds of the Redis processes behind ``peer`` (its cluster's masters)."""
    return sum(cpu_seconds(pid) for pid in peer.redis_pids)


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------
# The subscriber load: client processes with raw asyncio HTTP/1.1 streams


class _Stream(asyncio.Protocol):
    """One SSE stream: counts ``data:`` lines of complete frames, nothing more."""

    def __init__(self, pool: _Pool, request: bytes, sep: bytes, keep: bool) -> None:
        self.pool = pool
        self.request = request
        self.sep = sep
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.buf = b""
        self.status = 0  # the HTTP status once the headers are in
        self.closed = False
        self.count = 0
        self.expected = 0
        self.done_ns = 0
        self.keep: list[bytes] | None = [] if keep else None
        self.answered: asyncio.Future[None] = pool.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            try:
                self.status = int(head[9:12])
            except ValueError:
                self.status = -1
            self.head = b""
            data = head[end + 4:]
            if not self.answered.done():
                self.answered.set_result(None)
            if not data:
                return
        buf = self.buf + data if self.buf else data
        end = buf.rfind(self.sep)
        if end < 0:
            self.buf = buf
            return
        end += len(self.sep)
        n = buf.count(DATA_LINE, 0, end)
        if n:
            pool = self.pool
            if pool.latency:
                now = time.monotonic_ns()
                append = pool.latencies.append
                for match in LATENCY_RE.finditer(buf, 0, end):
                    append(now - int(match.group(1)))
            if self.keep is not None:
                self.keep.append(buf[:end])
            self.count += n
            if not self.done_ns and self.expected and self.count >= self.expected:
                self.done_ns = time.monotonic_ns()
                pool.finished()
        self.buf = buf[end:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.answered.done():
            self.answered.set_result(None)
        self.pool.lost(self)


class _Pool:
    """The streams of one client process, driven by commands from the bench."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.streams: list[_Stream] = []
        self.latency = False
        self.latencies: array[int] = array("q")
        self.remaining = 0
        self.all_done = asyncio.Event()
        self.closing = False
        self.lost_early = 0

    def finished(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.all_done.set()

    def lost(self, stream: _Stream) -> None:
        if self.closing:
            return
        self.lost_early += 1
        if stream.expected and not stream.done_ns:
            self.finished()  # it will never complete: stop waiting for it

    async def open(self, port: int, paths: Sequence[str], sep: bytes, keep: int,
                   headers: str, expected: Sequence[int] | None, concurrency: int,
                   timeout_s: float) -> dict[str, Any]:
        self.closing = False
        self.lost_early = 0
        errors: Counter[str] = Counter()
        gate = asyncio.Semaphore(concurrency)
        deadline = time.monotonic() + timeout_s
        if expected is not None:
            self._arm_counts(len(paths), expected, latency=False)

        async def one(index: int, path: str) -> None:
            request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                       f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
                       f"{headers}\r\n").encode()
            stream = _Stream(self, request, sep, index < keep)
            if expected is not None:
                stream.expected = expected[index]
            self.streams.append(stream)
            async with gate:
                left = deadline - time.monotonic()
                if left <= 0:
                    errors["not tried: out of time"] += 1
                    return
                try:
                    await asyncio.wait_for(
                        self.loop.create_connection(lambda: stream, HOST, port), left)
                    await asyncio.wait_for(asyncio.shield(stream.answered),
                                           deadline - time.monotonic())
                except TimeoutError:
                    errors["no response in time"] += 1
                except OSError as error:
                    errors[f"connect: {error.strerror or error}"] += 1

        await asyncio.gather(*(one(i, p) for i, p in enumerate(paths)))
        ok = sum(1 for s in self.streams if s.status == 200 and not s.closed)
        for stream in self.streams:
            if stream.status not in (0, 200):
                errors[f"HTTP {stream.status}"] += 1
            elif stream.status == 200 and stream.closed:
                errors["closed right after 200"] += 1
            elif stream.status == 0 and stream.closed and stream.transport is not None:
                errors["closed before answering"] += 1
        return {"ok": ok, "errors": dict(errors)}

    def _arm_counts(self, n: int, expected: Sequence[int], latency: bool) -> None:
        self.latency = latency
        self.latencies = array("q")
        self.remaining = sum(1 for e in expected[:n] if e)
        self.all_done = asyncio.Event()
        if self.remaining == 0:
            self.all_done.set()

    def arm(self, expected: Sequence[int], latency: bool) -> None:
        if len(expected) != len(self.streams):
            raise ValueError(f"{len(expected)} expectations for {len(self.streams)} streams")
        self._arm_counts(len(expected), expected, latency)
        for stream, count in zip(self.streams, expected, strict=True):
            stream.count = 0
            stream.expected = count
            stream.done_ns = 0
            if stream.keep is not None:
                stream.keep = []
            if stream.closed and count:
                self.finished()

    async def wait(self, deadline_ns: int) -> dict[str, Any]:
        left = (deadline_ns - time.monotonic_ns()) / 1e9
        if not self.all_done.is_set() and left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_done.wait(), left)
        streams = self.streams
        return {
            "received": sum(s.count for s in streams),
            "expected": sum(s.expected for s in streams),
            "incomplete": sum(1 for s in streams if s.count < s.expected),
            "last_done_ns": max((s.done_ns for s in streams), default=0),
            "latencies": self.latencies.tobytes(),
            "kept": {i: b"".join(s.keep) for i, s in enumerate(streams) if s.keep is not None},
            "closed": sum(1 for s in streams if s.closed),
        }

    async def close(self) -> dict[str, Any]:
        streams = self.streams
        report = {
            "over": sum(1 for s in streams if s.count > s.expected),
            "lost_early": self.lost_early,
            "open": sum(1 for s in streams if s.status == 200 and not s.closed),
        }
        self.closing = True
        for stream in streams:
            if stream.transport is not None and not stream.closed:
                stream.transport.close()
        deadline = time.monotonic() + 5
        while any(s.transport is not None and not s.closed for s in streams):
            if time.monotonic() > deadline:
                for s in streams:
                    if s.transport is not None and not s.closed:
                        s.transport.abort()
                break
            await asyncio.sleep(0.02)
        self.streams = []
        return report


async def _client_loop(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    pool = _Pool(loop)
    while True:
        command, *args = await loop.run_in_executor(None, conn.recv)
        try:
            if command == "exit":
                await pool.close()
                conn.send(("ok", None))
                return
            if command == "open":
                result: Any = await pool.open(*args)
            elif command == "arm":
                pool.arm(*args)
                result = None
            elif command == "wait":
                result = await pool.wait(*args)
            elif command == "close":
                result = await pool.close()
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", result))
        except Exception as error:  # report it to the bench, which raises it
            conn.send(("error", f"{type(error).__name__}: {error}"))


def _client_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us with "exit"
    raise_nofile()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_client_loop(conn))


class Clients:
    """The client processes; subscriber ``i`` lives in process ``i % CLIENT_PROCESSES``."""

    def __init__(self, processes: int = CLIENT_PROCESSES) -> None:
        context = multiprocessing.get_context("fork")
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for n in range(processes):
            mine, theirs = context.Pipe()
            proc = context.Process(target=_client_main, args=(theirs,), daemon=True,
                                   name=f"fanout-client-{n}")
            proc.start()
            theirs.close()
            self._conns.append(mine)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    async def _call(self, n: int, *command: Any) -> Any:
        loop = asyncio.get_running_loop()
        conn = self._conns[n]
        conn.send(command)
        status, result = await loop.run_in_executor(None, conn.recv)
        if status != "ok":
            raise BenchError(f"client process {n}: {result}")
        return result

    def _split(self, items: Sequence[Any]) -> list[list[Any]]:
        k = len(self._conns)
        return [list(items[n::k]) for n in range(k)]

    async def open(self, port: int, paths: Sequence[str], *, sep: bytes, keep: int = 0,
                   headers: str = "", expected: Sequence[int] | None = None,
                   concurrency: int = 128, timeout_s: float = 60.0) -> tuple[int, Counter[str]]:
        parts = self._split(paths)
        expected_parts = self._split(expected) if expected is not None else [None] * len(parts)
        results = await asyncio.gather(*(
            self._call(n, "open", port, part, sep, keep, headers, expected_parts[n],
                       concurrency, timeout_s)
            for n, part in enumerate(parts) if part))
        errors: Counter[str] = Counter()
        for result in results:
            errors.update(result["errors"])
        return sum(r["ok"] for r in results), errors

    async def arm(self, expected: Sequence[int], *, latency: bool) -> None:
        await asyncio.gather(*(self._call(n, "arm", part, latency)
                               for n, part in enumerate(self._split(expected))))

    async def wait(self, deadline_ns: int) -> Delivery:
        results = await asyncio.gather(*(self._call(n, "wait", deadline_ns)
                                         for n in range(len(self._conns))))
        latencies: array[int] = array("q")
        kept: dict[int, bytes] = {}
        for n, result in enumerate(results):
            latencies.frombytes(result["latencies"])
            for index, data in result["kept"].items():
                kept[index * len(self._conns) + n] = data
        return Delivery(
            received=sum(r["received"] for r in results),
            expected=sum(r["expected"] for r in results),
            incomplete=sum(r["incomplete"] for r in results),
            last_done_ns=max(r["last_done_ns"] for r in results),
            closed=sum(r["closed"] for r in results),
            latencies=latencies, kept=kept,
        )

    async def close(self) -> dict[str, int]:
        results = await asyncio.gather(*(self._call(n, "close")
                                         for n in range(len(self._conns))))
        return {key: sum(r[key] for r in results) for key in ("over", "lost_early", "open")}

    async def stop(self) -> None:
        for n, proc in enumerate(self._procs):
            if proc.is_alive():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._call(n, "exit"), 10)
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()  # this PID only
                proc.join(timeout=5)


@dataclass
class Delivery:
    received: int
    expected: int
    incomplete: int
    last_done_ns: int
    closed: int
    latencies: array[int]
    kept: dict[int, bytes]


# ---------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class Item:
    """One event as every peer gets it: the Struct (for the publisher) and its bytes."""

    event: ev.Event
    data: bytes

    @property
    def type(self) -> bytes:
        return str(type(self.event).__struct_config__.tag).encode()


def session_ids(count: int) -> list[str]:
    return [f"fan-{k:05d}" for k in range(count)]


def call_starts(sessions: Sequence[str]) -> list[ev.Event]:
    return [
        ev.CallStarted(
            event_id=f"{sid}-1", session_id=sid, timestamp=T0, seq=1,
            caller_id="+15551234567", called_number="+18001234567",
            dialog_name=("helpdesk", "billing")[n % 2],
        )
        for n, sid in enumerate(sessions)
    ]


_WORDS = ("my internet has been down since this morning and the router keeps blinking red "
          "so I would like to speak to an agent about a refund for the outage please ") * 4


def speech(sid: str, seq: int, event_id: str) -> Item:
    """A speech_partial of about EVENT_BYTES bytes of JSON."""

    def build(transcript: str) -> ev.SpeechPartial:
        return ev.SpeechPartial(
            event_id=event_id, session_id=sid, timestamp=T0 + timedelta(milliseconds=seq),
            seq=seq, transcript=transcript, confidence=0.82, language="en-US",
            duration_ms=seq * 250,
        )

    bare = len(ev.encode_event(build("")))
    event = build(_WORDS[:max(0, EVENT_BYTES - bare)])
    return Item(event, ev.encode_event(event))


class Feed:
    """Sessions and their next seq: the events of one scenario, in order."""

    def __init__(self, sessions: Sequence[str]) -> None:
        self.sessions = list(sessions)
        self.next_seq = dict.fromkeys(self.sessions, 2)  # seq 1 is call_started
        self.count = 0

    def next(self, event_id: str) -> Item:
        sid = self.sessions[self.count % len(self.sessions)]
        self.count += 1
        seq = self.next_seq[sid]
        self.next_seq[sid] = seq + 1
        return speech(sid, seq, event_id)

    def burst(self, n: int) -> list[Item]:
        return [self.next(f"B{self.count:019d}") for _ in range(n)]

    def timed(self) -> Item:
        """An event that carries its publish time (monotonic ns) in ``event_id``."""
        return self.next(f"L{time.monotonic_ns():019d}")


def expectations(items: Sequence[Item] | int, sessions: Sequence[str],
                 follows: Sequence[str | None]) -> list[int]:
    """Events each subscriber should receive (``follows[i]``: its session, or all)."""
    if isinstance(items, int):  # round-robin over sessions, as Feed does
        per = {sid: items // len(sessions) + (1 if n < items % len(sessions) else 0)
               for n, sid in enumerate(sessions)}
        total = items
    else:
        per = Counter(item.event.session_id for item in items)
        total = len(items)
    return [total if sid is None else per.get(sid, 0) for sid in follows]


# ---------------------------------------------------------------------------
# Publishers


class RedisFeed:
    """Commits events with the workers' publisher (callhub and naive read the log)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = connect_client(settings)
        self.publisher = CallPublisher(self.client, settings)

    async def reset(self, sessions: Sequence[str]) -> None:
        """An empty database with the scenario's calls started."""
        await self.client.flushdb()
        self.publisher = CallPublisher(self.client, self.settings)
        starts = call_starts(sessions)
        for first in range(0, len(starts), PUBLISH_BATCH):
            await self._commit(starts[first:first + PUBLISH_BATCH])

    async def _commit(self, events: Sequence[ev.Event]) -> None:
        outcomes = await self.publisher.commit_many(events)
        bad = [o for o in outcomes if o.status != "committed"]
        if bad or len(outcomes) != len(events):
            raise BenchError(f"a commit failed: {bad[:1] or 'missing outcomes'}")

    async def publish(self, items: Sequence[Item], *, settle: bool = True) -> None:
        """Commit ``items`` (``settle`` is for nchan's publisher: a commit is
        done when Redis has it, and the fan-out never holds it up)."""
        for first in range(0, len(items), PUBLISH_BATCH):
            await self._commit([item.event for item in items[first:first + PUBLISH_BATCH]])

    async def close(self) -> None:
        await self.client.aclose()


class NchanPublisher:
    """POSTs events to nchan's publisher location over one keep-alive connection.

    Requests are pipelined ``NCHAN_WINDOW`` at a time with up to two windows in
    flight; every response's status is checked (201 or 202). nchan answers a
    POST only once it has fanned the message out, so in the latency phase the
    publisher does not wait for the answer (``settle=False``): like callhub's
    commit, a publish is done when the server has it, and a backlog in nchan
    shows as latency rather than as a publisher that slows down.
    """

    def __init__(self, port: int, channel: Callable[[Item], str]) -> None:
        self._port = port
        self._channel = channel
        self._unanswered = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(HOST, self._port)

    def _request(self, item: Item) -> bytes:
        return (b"POST /pub?id=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nX-EventSource-Event: %s\r\n"
                b"Content-Length: %d\r\n\r\n%s"
                % (self._channel(item).encode(), item.type, len(item.data), item.data))

    async def _responses(self, n: int) -> None:
        assert self._reader is not None
        for _ in range(n):
            self._unanswered -= 1
            head = await self._reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            if status not in (200, 201, 202):
                raise BenchError(f"nchan refused a publish: {head[:200]!r}")
            match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            if match:
                await self._reader.readexactly(int(match.group(1)))

    async def publish(self, items: Sequence[Item], *, settle: bool = True) -> None:
        """Send ``items``; ``settle``: then wait for every answer (else only
        while more than two windows are unanswered)."""
        assert self._writer is not None
        for first in range(0, len(items), NCHAN_WINDOW):
            window = items[first:first + NCHAN_WINDOW]
            self._writer.write(b"".join(self._request(item) for item in window))
            self._unanswered += len(window)
            excess = self._unanswered - 2 * NCHAN_WINDOW
            if excess > 0:
                await self._responses(excess)
        if settle:
            await self._responses(self._unanswered)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


# ---------------------------------------------------------------------------
# Peers


class Peer:
    name = ""
    sep = b"\n\n"
    # Events of one shard arrive in publish order; across shards only each
    # session's order is guaranteed (the kept streams are checked accordingly).
    shards = 1

    def __init__(self, redis_url: str, redis_pids: Sequence[int | None] = ()) -> None:
        self.redis_url = redis_url
        # Whose CPU counts as the peer's Redis (none known for a given cluster URL).
        self.redis_pids = [pid for pid in redis_pids if pid is not None]
        self.server: Server | None = None
        self.port = 0

    def start(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    def path(self, session: str | None) -> str:
        raise NotImplementedError

    async def wait_subscribed(self, n: int, within_s: float) -> int:
        """How many subscribers the server has registered (waits up to ``within_s``)."""
        return n

    async def prepare(self, sessions: Sequence[str]) -> None:
        """Before the server starts: the state it expects (calls started, ...)."""

    def publisher_for(self, all_events: bool) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def log_tail(self) -> str:
        return self.server.log_tail() if self.server is not None else ""


class CallhubPeer(Peer):
    name = "callhub"

    def __init__(self, feed: RedisFeed, redis_pids: Sequence[int | None] = (), *,
                 name: str | None = None, env: dict[str, str] | None = None) -> None:
        """``env``: settings of this peer's replica (``--linger``: CALLHUB_STREAM_LINGER)."""
        super().__init__(feed.settings.redis_url, redis_pids)
        self.feed = feed
        if name is not None:
            self.name = name
        self.shards = feed.settings.shards
        self.env = env or {}

    def start(self) -> None:
        self.port = free_port()
        settings = self.feed.settings
        self.server = Server(f"callhub serve ({self.name})", [
            sys.executable, "-m", "callhub.cli", "serve", "--host", HOST, "--port", str(self.port),
            "--redis-url", self.redis_url, "--shards", str(settings.shards),
            "--no-access-log"], self.port,
            # Every subscriber comes from this one load client: the per-client
            # stream cap (a safety default) would refuse all but the first 100.
            env={**os.environ, "CALLHUB_REDIS_CLUSTER": "1" if settings.redis_cluster else "0",
                 "CALLHUB_MAX_STREAMS_PER_CLIENT": "0", "CALLHUB_MAX_STREAMS_PER_KEY": "0",
                 **self.env})
        self.server.wait_ready("/healthz")

    def path(self, session: str | None) -> str:
        return "/v1/calls/events" + (f"?session_id={session}" if session else "")

    async def prepare(self, sessions: Sequence[str]) -> None:
        await self.feed.reset(sessions)

    def publisher_for(self, all_events: bool) -> RedisFeed:
        return self.feed


class NaivePeer(CallhubPeer):
    name = "naive"
    sep = b"\r\n\r\n"  # sse-starlette's line separator is CRLF

    def start(self) -> None:
        self.port = free_port()
        self.server = Server("naive sse-starlette", [
            sys.executable, "-m", "uvicorn", "bench.naive_app:create", "--factory",
            "--host", HOST, "--port", str(self.port), "--no-access-log",
            "--log-level", "warning"], self.port,
            env={**os.environ, "NAIVE_REDIS_URL": self.redis_url})
        self.server.wait_ready("/healthz")  # a 404: the app is up

    def path(self, session: str | None) -> str:
        return "/events" + (f"?session_id={session}" if session else "")

    async def wait_subscribed(self, n: int, within_s: float) -> int:
        """Until ``n`` XREADs block in Redis: a stream's first XREAD starts at ``$``,
        so an event committed before it would be missed (the naive app's race)."""
        deadline = time.monotonic() + within_s
        blocked = 0
        while time.monotonic() < deadline:
            info = await self.feed.client.info("clients")
            blocked = int(info.get("blocked_clients", 0))
            if blocked >= n:
                return blocked
            await asyncio.sleep(0.1)
        return blocked


class NchanPeer(Peer):
    """nginx with nchan, one worker, at its best measured here (docs/performance.md).

    ``storage``: ``memory`` (nchan's own shared memory; the default, being the
    faster here) or ``redis`` (``nchan_redis_pass`` to the run's redis-server,
    flushed before each phase, whose CPU then counts as this peer's Redis).
    """

    name = "nchan"

    def __init__(self, redis_url: str, workdir: Path, *, storage: str = "memory",
                 redis_pids: Sequence[int | None] = ()) -> None:
        if storage not in NCHAN_STORAGES:
            raise ValueError(f"nchan storage {storage!r}: one of {NCHAN_STORAGES}")
        super().__init__(redis_url, redis_pids if storage == "redis" else ())
        self.workdir = workdir
        self.storage = storage
        self.master = 0

    async def prepare(self, sessions: Sequence[str]) -> None:
        """Redis-backed channels outlive nginx: a new subscriber would get the
        last phase's buffered messages (``nchan_subscriber_first_message`` is
        ``oldest``), so the database starts empty."""
        if self.storage == "redis":
            client = connect_client(Settings(redis_url=self.redis_url))
            try:
                await client.flushdb()
            finally:
                await client.aclose()

    def config(self) -> str:
        w = self.workdir
        # nchan 1.3's recommended form: an upstream and nchan_redis_pass.
        redis = (f"upstream nchan_redis {{ nchan_redis_server {self.redis_url}; }}"
                 if self.storage == "redis" else "")
        use_redis = "nchan_redis_pass nchan_redis;" if self.storage == "redis" else ""
        return f"""
load_module {NCHAN_MODULE};
worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
events {{ worker_connections {resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100};
          multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {w}/body;
  proxy_temp_path {w}/proxy;
  fastcgi_temp_path {w}/fastcgi;
  uwsgi_temp_path {w}/uwsgi;
  scgi_temp_path {w}/scgi;
  keepalive_requests 10000000;
  {redis}
  server {{
    listen {HOST}:{self.port} backlog=4096;
    location = /pub {{
      nchan_publisher;
      nchan_channel_id $arg_id;
      {use_redis}
      nchan_message_buffer_length 100;
    }}
    location = /sub {{
      nchan_subscriber eventsource;
      nchan_channel_id $arg_id;
      # The heartbeat callhub sends (a comment every CALLHUB_PING_INTERVAL,
      # 15 s): nchan sends none by default, which would make its idle CPU 0
      # by doing less.
      nchan_eventsource_ping_interval 15;
      nchan_eventsource_ping_comment "ping";
      nchan_eventsource_ping_event "";
      nchan_eventsource_ping_data "";
      {use_redis}
    }}
    location = /nchan_status {{ nchan_stub_status; }}
  }}
}}
"""

    def start(self) -> None:
        self.port = free_port()
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.server = Server("nginx (nchan)", [
            "nginx", "-p", str(self.workdir), "-c", str(conf),
            "-e", str(self.workdir / "error.log")], self.port)
        self.server.wait_ready("/nchan_status")
        self.master = self.server.pid
        deadline = time.monotonic() + 5
        while not children(self.master) and time.monotonic() < deadline:
            time.sleep(0.02)  # poll interval, bounded by the deadline
        if not children(self.master):
            raise BenchError("nginx started no worker process")
        if self.storage == "redis":
            self._wait_redis()

    def _wait_redis(self, within_s: float = 10.0) -> None:
        """Until nchan has its Redis connection: before that it answers 503."""
        deadline = time.monotonic() + within_s
        status = 0
        while time.monotonic() < deadline:
            status = httpx.post(f"http://{HOST}:{self.port}/pub?id=ready", content=b"{}",
                                timeout=2).status_code
            if status < 300:
                return
            time.sleep(0.05)  # poll interval, bounded by the deadline
        raise BenchError(f"nchan answered {status} to a publish for {within_s:g} s "
                         f"(no Redis?):\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return children(self.master)[0]

    def path(self, session: str | None) -> str:
        return f"/sub?id={'s-' + session if session else 'all'}"

    async def wait_subscribed(self, n: int, within_s: float) -> int:
        deadline = time.monotonic() + within_s
        count = 0
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection(HOST, self.port)
            try:
                writer.write(b"GET /nchan_status HTTP/1.0\r\n\r\n")
                text = await reader.read()
            finally:
                writer.close()
            match = re.search(rb"\nsubscribers: (\d+)", text)
            count = int(match.group(1)) if match else 0
            if count >= n:
                return count
            await asyncio.sleep(0.1)
        return count

    def publisher_for(self, all_events: bool) -> NchanPublisher:
        if all_events:
            return NchanPublisher(self.port, lambda item: "all")
        return NchanPublisher(self.port, lambda item: "s-" + item.event.session_id)

    def log_tail(self) -> str:
        path = self.workdir / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# ---------------------------------------------------------------------------
# Phases


@dataclass
class Row:
    peer: str
    subs: int
    filter: str
    events: int = 0
    deliveries: int = 0
    received: int = 0
    publish_s: float = 0.0
    total_s: float = 0.0
    complete: bool = False
    server_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    client_busy: float = 0.0  # client processes' CPU / (wall time x processes)
    rss_kb: int = 0
    hwm_kb: int = 0
    lat_expected: int = 0
    lat_received: int = 0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    lat_cpu_s: float = 0.0
    lat_wall_s: float = 0.0
    lat_client_busy: float = 0.0
    lat_publish_lag_s: float = 0.0  # how far the last publish was behind its schedule
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.received / self.total_s if self.total_s > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.server_cpu_s * 1e6 / self.received if self.received else float("nan")

    @property
    def redis_us(self) -> float:
        return self.redis_cpu_s * 1e6 / self.received if self.received else float("nan")


@dataclass
class Scenario:
    subs: int
    all_events: bool

    @property
    def label(self) -> str:
        return "all" if self.all_events else "session"

    @property
    def sessions(self) -> list[str]:
        return session_ids(max(1, self.subs // SUBS_PER_SESSION))

    @property
    def follows(self) -> list[str | None]:
        sessions = self.sessions
        return [None if self.all_events else sessions[i % len(sessions)]
                for i in range(self.subs)]


class Bench:
    def __init__(self, plan: Plan, clients: Clients,
                 status: StatusLine, profile_dir: Path | None = None) -> None:
        self.plan = plan
        self.clients = clients
        self.status = status
        self.profile_dir = profile_dir
        self.profiles: list[Path] = []

    def profile(self, peer: Peer, label: str) -> tuple[subprocess.Popen[bytes], Path] | None:
        """Start ``py-spy record`` on callhub's process (with ``--py-spy DIR``)."""
        if self.profile_dir is None or peer.name != "callhub":
            return None
        out = self.profile_dir / f"callhub-{label}.txt"
        command = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(peer.pid),
                   "-r", "250", "--nonblocking", "-f", "raw", "-o", str(out),
                   "-d", str(int(self.plan.deadline_s + self.plan.drain_s + 10))]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # py-spy attaches
        return process, out

    def end_profile(self, profiler: tuple[subprocess.Popen[bytes], Path] | None) -> None:
        if profiler is None:
            return
        process, out = profiler
        process.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if out.exists():
            self.profiles.append(out)

    @contextlib.asynccontextmanager
    async def subscribed(self, peer: Peer, scenario: Scenario, row: Row, *, keep: int = 0
                         ) -> AsyncIterator[None]:
        """A fresh server with the scenario's subscribers connected and registered."""
        await peer.prepare(scenario.sessions)
        peer.start()
        try:
            paths = [peer.path(sid) for sid in scenario.follows]
            try:
                ok, errors = await self.clients.open(peer.port, paths, sep=peer.sep, keep=keep)
                if ok < len(paths):
                    raise BenchError(f"only {ok} of {len(paths)} subscribers connected: "
                                     f"{dict(errors)}\n{peer.log_tail()}")
                registered = await peer.wait_subscribed(len(paths), 20.0)
                if registered < len(paths):
                    raise BenchError(f"{registered} of {len(paths)} subscribers registered "
                                     "after 20 s")
                yield
            finally:
                report = await self.clients.close()
                if report["over"]:
                    row.problems.append(f"{report['over']} subscribers received more "
                                        "events than were published (duplicates)")
                if report["lost_early"]:
                    row.problems.append(f"{report['lost_early']} streams were closed by "
                                        "the server")
        finally:
            if peer.server is not None and not peer.server.running():
                row.problems.append(f"the server exited: {peer.log_tail()[-500:]}")
            peer.stop()

    async def burst(self, peer: Peer, scenario: Scenario, row: Row) -> None:
        feed = Feed(scenario.sessions)
        n = self.plan.burst_all if scenario.all_events else self.plan.burst_session
        items = feed.burst(n)
        expected = expectations(items, scenario.sessions, scenario.follows)
        row.events = n
        row.deliveries = sum(expected)
        keep = 2  # the first streams of each client process keep their bytes for checks
        async with self.subscribed(peer, scenario, row, keep=keep):
            publisher = peer.publisher_for(scenario.all_events)
            if isinstance(publisher, NchanPublisher):
                await publisher.open()
            try:
                await self.clients.arm(expected, latency=False)
                profiler = self.profile(peer, f"{row.subs}-{row.filter}-burst")
                cpu0, redis0, client0 = (cpu_seconds(peer.pid), redis_cpu(peer),
                                         self.clients.cpu())
                t0 = time.monotonic_ns()
                await publisher.publish(items)
                row.publish_s = (time.monotonic_ns() - t0) / 1e9
                got = await self.clients.wait(t0 + int(self.plan.deadline_s * 1e9))
                t1 = time.monotonic_ns()
                row.server_cpu_s = cpu_seconds(peer.pid) - cpu0
                row.redis_cpu_s = redis_cpu(peer) - redis0
                row.rss_kb, row.hwm_kb = memory_kb(peer.pid), memory_kb(peer.pid, "VmHWM")
                self.end_profile(profiler)
            finally:
                if isinstance(publisher, NchanPublisher):
                    await publisher.close()
            row.received = got.received
            row.complete = got.incomplete == 0 and got.received == got.expected
            end = got.last_done_ns if row.complete else t1
            row.total_s = (end - t0) / 1e9
            row.client_busy = (self.clients.cpu() - client0) / (
                (t1 - t0) / 1e9 * len(self.clients.pids))
            if not row.complete:
                row.problems.append(
                    f"burst: {got.incomplete} of {scenario.subs} subscribers incomplete at the "
                    f"{self.plan.deadline_s:g} s deadline ({got.received:,} of "
                    f"{got.expected:,} deliveries; {got.closed} streams closed)")
            self.verify(peer, row, items, scenario, got.kept)

    def verify(self, peer: Peer, row: Row, items: Sequence[Item], scenario: Scenario,
               kept: dict[int, bytes]) -> None:
        """The kept streams got exactly their events, in order, once each."""
        follows = scenario.follows
        session_of = {item.event.event_id.encode(): item.event.session_id for item in items}
        for index, data in sorted(kept.items()):
            want = [item.event.event_id.encode() for item in items
                    if follows[index] is None or item.event.session_id == follows[index]]
            have = EVENT_ID_RE.findall(data)
            if not delivered_as_published(have, want, session_of, peer.shards):
                missing = len(set(want) - set(have))
                dupes = len(have) - len(set(have))
                row.problems.append(
                    f"subscriber {index}: {len(have)} events, expected {len(want)} "
                    f"({missing} missing, {dupes} duplicated, "
                    f"{'in' if sorted(have) == have else 'OUT OF'} order)")

    async def latency(self, peer: Peer, scenario: Scenario, row: Row) -> None:
        feed = Feed(scenario.sessions)
        total = int(self.plan.rate * self.plan.rate_seconds)
        expected = expectations(total, scenario.sessions, scenario.follows)
        row.lat_expected = sum(expected)
        async with self.subscribed(peer, scenario, row):
            publisher = peer.publisher_for(scenario.all_events)
            if isinstance(publisher, NchanPublisher):
                await publisher.open()
            try:
                await self.clients.arm(expected, latency=True)
                profiler = self.profile(peer, f"{row.subs}-{row.filter}-latency")
                cpu0, client0 = cpu_seconds(peer.pid), self.clients.cpu()
                t0 = time.monotonic_ns()
                start = time.monotonic()
                for k in range(total):
                    delay = start + k / self.plan.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await publisher.publish([feed.timed()], settle=False)
                row.lat_publish_lag_s = max(
                    0.0, time.monotonic() - (start + (total - 1) / self.plan.rate))
                drained_by = time.monotonic_ns() + int(self.plan.drain_s * 1e9)
                await publisher.publish([], settle=True)  # nchan's answers, checked
                got = await self.clients.wait(drained_by)
                t1 = time.monotonic_ns()
                row.lat_cpu_s = cpu_seconds(peer.pid) - cpu0
                row.lat_wall_s = ((got.last_done_ns or t1) - t0) / 1e9
                row.lat_client_busy = (self.clients.cpu() - client0) / (
                    (t1 - t0) / 1e9 * len(self.clients.pids))
                self.end_profile(profiler)
            finally:
                if isinstance(publisher, NchanPublisher):
                    await publisher.close()
        row.lat_received = len(got.latencies)
        missing = row.lat_expected - row.lat_received
        if missing > 0:
            row.problems.append(f"latency: {missing:,} of {row.lat_expected:,} deliveries "
                                f"not in {self.plan.drain_s:g} s after the last publish")
        values: list[float] = [v / 1e6 for v in got.latencies]
        values.extend([float("inf")] * max(0, missing))
        if values:
            row.p50_ms = percentile(values, 0.50)
            row.p99_ms = percentile(values, 0.99)

    async def idle(self, peer: Peer, n: int) -> dict[str, Any]:
        """RSS per idle subscriber: before and after opening ``n`` streams."""
        result: dict[str, Any] = {"peer": peer.name, "n": n}
        peer.start()
        try:
            path = peer.path(None)
            # Warm-up: a few streams opened and closed, so lazy set-up is in "before".
            await self.clients.open(peer.port, [path] * 10, sep=peer.sep)
            await self.clients.close()
            await asyncio.sleep(0.5)
            before = memory_kb(peer.pid)
            t0 = time.monotonic()
            ok, errors = await self.clients.open(peer.port, [path] * n, sep=peer.sep,
                                                 concurrency=256, timeout_s=90.0)
            result["open_s"] = time.monotonic() - t0
            result["registered"] = await peer.wait_subscribed(ok, 20.0)
            await asyncio.sleep(2.0)  # let buffers and the allocator settle
            after = memory_kb(peer.pid)
            result["fds"] = open_fds(peer.pid)
            # Idle CPU over a whole ping interval (callhub pings each stream within
            # 15 s), so every peer's keep-alive work is in the window.
            cpu0, t1 = cpu_seconds(peer.pid), time.monotonic()
            await asyncio.sleep(self.plan.idle_cpu_s)
            result["idle_cpu"] = (cpu_seconds(peer.pid) - cpu0) / (time.monotonic() - t1)
            report = await self.clients.close()
            alive = report["open"]
            result.update(ok=ok, alive=alive, errors=dict(errors), before_kb=before,
                          after_kb=after,
                          per_kb=(after - before) / alive if alive else float("nan"))
            if alive < n:
                result["log"] = _log_summary(peer.log_tail())
        finally:
            peer.stop()
        return result

    async def catch_up(self, peer: CallhubPeer) -> dict[str, Any]:
        """A client away while ``plan.catch_up`` events are committed resumes with its cursor."""
        sessions = session_ids(100)
        feed = Feed(sessions)
        await peer.prepare(sessions)
        peer.start()
        try:
            path = peer.path(None)
            ok, errors = await self.clients.open(peer.port, [path], sep=peer.sep, keep=1,
                                                 expected=[1])
            if ok != 1:
                raise BenchError(f"catch-up: the client did not connect: {dict(errors)}")
            await peer.feed.publish(feed.burst(1))
            got = await self.clients.wait(time.monotonic_ns() + 10**10)
            await self.clients.close()
            ids = re.findall(rb"\nid: ([^\n]+)\n", b"\n" + got.kept.get(0, b""))
            if got.received != 1 or not ids:
                raise BenchError("catch-up: the first event did not arrive")
            cursor = ids[-1].decode()
            items = feed.burst(self.plan.catch_up)
            t0 = time.monotonic()
            await peer.feed.publish(items)
            commit_s = time.monotonic() - t0
            profiler = self.profile(peer, "catch-up")
            cpu0 = cpu_seconds(peer.pid)
            t0_ns = time.monotonic_ns()
            ok, errors = await self.clients.open(
                peer.port, [path], sep=peer.sep, keep=1, headers=f"Last-Event-ID: {cursor}\r\n",
                expected=[len(items)])
            got = await self.clients.wait(t0_ns + 60 * 10**9)
            cpu = cpu_seconds(peer.pid) - cpu0
            self.end_profile(profiler)
            await self.clients.close()
            seconds = ((got.last_done_ns or time.monotonic_ns()) - t0_ns) / 1e9
            have = EVENT_ID_RE.findall(got.kept.get(0, b""))
            want = [item.event.event_id.encode() for item in items]
            session_of = {item.event.event_id.encode(): item.event.session_id for item in items}
            return {"peer": peer.name, "events": len(items), "received": got.received,
                    "seconds": seconds, "commit_s": commit_s,
                    "rate": got.received / seconds if seconds else 0.0,
                    "cpu_us": cpu * 1e6 / got.received if got.received else float("nan"),
                    "exact": delivered_as_published(have, want, session_of, peer.shards),
                    "mb": len(got.kept.get(0, b"")) / 1e6}
        finally:
            peer.stop()


def per_session(ids: Sequence[bytes], session_of: dict[bytes, str]) -> dict[str, list[bytes]]:
    """Event ids grouped by session, each group in the order given."""
    groups: dict[str, list[bytes]] = {}
    for event_id in ids:
        groups.setdefault(session_of.get(event_id, ""), []).append(event_id)
    return groups


def delivered_as_published(have: Sequence[bytes], want: Sequence[bytes],
                           session_of: dict[bytes, str], shards: int) -> bool:
    """Each event once, in publish order: the whole order on one shard, each
    session's order across shards (I2; shards interleave by entry id)."""
    if list(have) == list(want):
        return True
    return shards > 1 and sorted(have) == sorted(want) and \
        per_session(have, session_of) == per_session(want, session_of)


def _log_summary(log: str) -> str:
    """The distinct exceptions in a server log, most frequent first."""
    lines: Counter[str] = Counter()
    for line in log.splitlines():
        match = re.search(r"\b\w*(?:Error|Exception)\b: .*", line)
        if match:
            lines[match.group(0)[:160]] += 1
    return "; ".join(f"{text} (x{count})" for text, count in lines.most_common(3))


# ---------------------------------------------------------------------------
# Report


def ms_text(value: float) -> str:
    """A latency in ms for the tables: ``-`` when none, ``>drain`` when it never came."""
    if value != value:  # nan
        return "-"
    return ">drain" if value == float("inf") else f"{value:.1f}"


def client_share(busy: float) -> str:
    """The client processes' CPU share, flagged when the client may be the limit."""
    return f"{busy:.0%}" + ("!" if busy >= CLIENT_BOUND else "")


def describe_run(present: set[str], clients: int, *, shards: int = 1,
                 nchan_storage: str = "memory", nofile: int = 0,
                 floor: dict[str, float] | None = None) -> None:
    """The run's header: the machine, the load, the peers and the client."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(f"Fan-out: {os.cpu_count()} CPUs, load average {load}; servers on 127.0.0.1; "
          f"{clients} client processes (raw asyncio); events ~{EVENT_BYTES} B of JSON"
          + (f"; open-files limit {nofile:,}" if nofile else ""))
    storage = ("memory mode (no Redis)" if nchan_storage == "memory"
               else "Redis-backed (nchan_redis_pass to the run's redis-server)")
    described = {
        "callhub": "callhub: 1 process on one redis-server",
        "cluster": "cluster: the same callhub process on a Redis Cluster (on a private one, "
                   "3 masters sharing these cores), same shard count",
        "nchan": f"nchan: nginx, 1 worker process, {storage}, events POSTed pipelined over "
                 "one keep-alive connection",
        "naive": "naive: 1 uvicorn process (sse-starlette)",
    }
    print("; ".join(text for peer, text in described.items() if peer in present)
          + f"; CALLHUB_SHARDS={shards}")
    if floor is not None:
        print(f"floor of nchan's design here (bench/write_floor.py): one {FRAME_BYTES} B write "
              f"per delivery to {floor['subscribers']:,} loopback TCP readers costs "
              f"{floor['us_per_write']:.2f} us CPU")


def report(plan: Plan, rows: list[Row], idle: list[dict[str, Any]],
           catch_ups: list[dict[str, Any]], nofile: int, shards: int = 1, *,
           clients: int = CLIENT_PROCESSES, nchan_storage: str = "memory",
           floor: dict[str, float] | None = None) -> None:
    present = {r.peer for r in rows} | {one["peer"] for one in idle}
    describe_run(present, clients, shards=shards, nchan_storage=nchan_storage, nofile=nofile,
                 floor=floor)
    print(f"burst: {plan.burst_all:,} events (all) / {plan.burst_session:,} events (session, "
          f"{SUBS_PER_SESSION} subscribers per session), deadline {plan.deadline_s:g} s; "
          f"latency: {plan.rate} events/s for {plan.rate_seconds:g} s, "
          f"drain {plan.drain_s:g} s\n")
    print("Burst: the events published as fast as the publisher can")
    head = (f"{'peer':<8} {'subs':>5} {'filter':<8} {'events':>7} {'deliveries':>10} "
            f"{'deliv/s':>10} {'publish s':>9} {'total s':>8} {'CPU us/dlv':>10} "
            f"{'redis us':>8} {'RSS MB':>7} {'peak MB':>7} {'client':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        rate = f"{r.rate:,.0f}" + ("" if r.complete else "*")
        print(f"{r.peer:<8} {r.subs:>5} {r.filter:<8} {r.events:>7,} {r.deliveries:>10,} "
              f"{rate:>10} {r.publish_s:>9.2f} {r.total_s:>8.2f} {r.cpu_us:>10.2f} "
              f"{r.redis_us:>8.2f} {r.rss_kb / 1024:>7.1f} {r.hwm_kb / 1024:>7.1f} "
              f"{client_share(r.client_busy):>6}")
    print("(deliv/s: deliveries received / time from the first publish until all were in; "
          "* = not all in by the deadline:\n the rate over the deadline. CPU us/dlv: the "
          "server process's user+sys CPU during the burst per delivery; redis us: "
          "redis-server's.\n client: the client processes' CPU share (each process's "
          f"busy time / wall time, averaged); ! = at least {CLIENT_BOUND:.0%}: the client "
          "may be the limit. RSS after the burst; peak: VmHWM)")
    print(f"\nSteady rate: {plan.rate} events/s for {plan.rate_seconds:g} s; publish -> "
          "receive latency per delivery")
    head = (f"{'peer':<8} {'subs':>5} {'filter':<8} {'deliveries':>10} {'received':>10} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'server CPU':>10} {'CPU us/dlv':>10} {'client':>6} "
            f"{'pub lag s':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        busy = r.lat_cpu_s / r.lat_wall_s if r.lat_wall_s else float("nan")
        per = r.lat_cpu_s * 1e6 / r.lat_received if r.lat_received else float("nan")
        print(f"{r.peer:<8} {r.subs:>5} {r.filter:<8} {r.lat_expected:>10,} "
              f"{r.lat_received:>10,} {ms_text(r.p50_ms):>7} {ms_text(r.p99_ms):>7} "
              f"{busy:>10.0%} {per:>10.2f} {client_share(r.lat_client_busy):>6} "
              f"{r.lat_publish_lag_s:>9.2f}")
    print(f"(deliveries not received {plan.drain_s:g} s after the last publish count as "
          "infinitely late (>drain). server CPU: share of one core from the first publish "
          "until all were in.\n pub lag: how far behind its schedule the last publish "
          "was (nchan's publisher waits for answers only when 128 are outstanding: nchan "
          "answers a\n POST once it has fanned it out, see the burst's publish s)")
    problems = [(r, p) for r in rows for p in r.problems]
    if problems:
        print("\nproblems seen:")
        for r, p in problems:
            print(f"  {r.peer} {r.subs} {r.filter}: {p}")

    if idle:
        print("\nIdle subscribers: server RSS before and after opening them (all-events "
              f"streams, 2 s settle), then its CPU over {plan.idle_cpu_s:g} s of idling")
        print(f"{'peer':<8} {'asked':>7} {'open':>7} {'open s':>7} {'server fds':>10} "
              f"{'RSS before MB':>13} {'RSS after MB':>12} {'KB/subscriber':>13} "
              f"{'idle CPU':>8}")
        for one in idle:
            per = one.get("per_kb", float("nan"))
            print(f"{one['peer']:<8} {one['n']:>7,} {one.get('alive', 0):>7,} "
                  f"{one.get('open_s', 0):>7.1f} {one.get('fds', 0):>10,} "
                  f"{one.get('before_kb', 0) / 1024:>13.1f} "
                  f"{one.get('after_kb', 0) / 1024:>12.1f} {per:>13.1f} "
                  f"{one.get('idle_cpu', float('nan')):>8.2%}")
            if one.get("errors"):
                print(f"         client errors: {one['errors']}")
            if one.get("log"):
                print(f"         server log: {one['log']}")
        print(f"(KB/subscriber over the streams still open; every process may hold "
              f"{nofile:,} open files, the hard limit here)")

    for c in catch_ups:
        print(f"\nCatch-up ({c['peer']}): {c['events']:,} events committed in "
              f"{c['commit_s']:.1f} s "
              f"while the client was away; resumed with Last-Event-ID: {c['received']:,} "
              f"events in {c['seconds']:.2f} s = {c['rate']:,.0f} events/s "
              f"({c['mb'] / c['seconds'] if c['seconds'] else 0:.0f} MB/s), "
              f"server CPU {c['cpu_us']:.1f} us/event; exact sequence: "
              f"{'yes' if c['exact'] else 'NO'}")

    print("\nTargets (at the largest subscriber count):")
    top = max(plan.subscriber_counts)
    for label in ("all", "session"):
        by = {r.peer: r for r in rows if r.subs == top and r.filter == label}
        hub = by.get("callhub")
        if hub is None:
            continue
        for peer, target in (("nchan", TARGET_VS_NCHAN), ("naive", TARGET_VS_NAIVE)):
            other = by.get(peer)
            if other is None or not other.rate:
                continue
            ratio = hub.rate / other.rate
            note = "" if other.complete else (
                f" ({peer} missed the deadline: its rate is what it delivered by then)")
            print(f"  callhub / {peer} deliveries/s, {top} subs, {label}: {ratio:.2f} "
                  f"({'meets' if ratio >= target else 'BELOW'} >= {target:g}){note}")
        verdict = "meets" if hub.p99_ms < TARGET_P99_MS else "MISSES"
        print(f"  callhub p99, {top} subs, {label}: {ms_text(hub.p99_ms)} ms "
              f"({verdict} < {TARGET_P99_MS:g} ms)")
        on_cluster = by.get("cluster")
        if on_cluster is not None and hub.rate:
            ratio = on_cluster.rate / hub.rate
            print(f"  cluster / single node deliveries/s, {top} subs, {label}: {ratio:.2f} "
                  f"({'meets' if ratio >= TARGET_VS_SINGLE else 'BELOW'} >= "
                  f"{TARGET_VS_SINGLE:g}); p99 {ms_text(on_cluster.p99_ms)} ms against "
                  f"{ms_text(hub.p99_ms)} ms")
    by_peer = {c["peer"]: c for c in catch_ups}
    if "cluster" in by_peer and by_peer.get("callhub", {}).get("rate"):
        ratio = by_peer["cluster"]["rate"] / by_peer["callhub"]["rate"]
        print(f"  cluster / single node catch-up events/s: {ratio:.2f} "
              f"({'meets' if ratio >= TARGET_VS_SINGLE else 'BELOW'} >= {TARGET_VS_SINGLE:g})")
    steady = {r.peer: r for r in rows if r.subs == top and r.filter == "all"}
    hub, nchan = steady.get("callhub"), steady.get("nchan")
    if hub is not None and nchan is not None and hub.lat_received and nchan.lat_received:
        mine, theirs = (r.lat_cpu_s * 1e6 / r.lat_received for r in (hub, nchan))
        print(f"  callhub / nchan CPU per delivery, {top} x {plan.rate} events/s: "
              f"{mine:.2f} / {theirs:.2f} us = {mine / theirs:.2f} "
              f"({'meets' if mine <= theirs else 'MISSES'} <= 1)")
        print(f"  callhub / nchan p99, {top} x {plan.rate} events/s: "
              f"{ms_text(hub.p99_ms)} / {ms_text(nchan.p99_ms)} ms "
              f"({'meets' if hub.p99_ms <= nchan.p99_ms else 'MISSES'} <=)")
    for one in idle:
        if one["peer"] == "callhub":
            per = one.get("per_kb", float("nan"))
            verdict = "meets" if per <= TARGET_IDLE_KB else "MISSES"
            print(f"  callhub per idle subscriber at {one['n']:,}: {per:.1f} KB "
                  f"({verdict} <= {TARGET_IDLE_KB:g} KB); idle CPU "
                  f"{one.get('idle_cpu', float('nan')):.2%} of a core")


# ---------------------------------------------------------------------------
# Main


def make_peers(engines: Engines, feeds: list[RedisFeed], nchan_dir: Path | None,
               args: argparse.Namespace) -> list[Peer]:
    """The peers ``args`` asks for, in run order; a cluster feed is appended to ``feeds``."""
    redis = engines.single
    feed = feeds[0]
    peers: list[Peer] = [CallhubPeer(feed, [redis.pid])]
    if engines.cluster_url is not None:
        feeds.append(RedisFeed(Settings(redis_url=engines.cluster_url, redis_cluster=True,
                                        shards=args.shards)))
        peers.append(CallhubPeer(feeds[-1], engines.cluster_pids, name="cluster"))
    if nchan_dir is not None:
        peers.append(NchanPeer(redis.url, nchan_dir, storage=args.nchan_storage,
                               redis_pids=[redis.pid]))
    peers.append(NaivePeer(feed, [redis.pid]))
    peers = [peer for peer in peers if peer.name in args.peers]
    # The same replica with other lingers, measured in the same run.
    peers[1:1] = [CallhubPeer(feed, [redis.pid], name=f"ch-{ms}ms",
                              env={"CALLHUB_STREAM_LINGER": f"{ms}ms"})
                  for ms in args.linger]
    if args.baseline is not None:
        # An earlier checkout's replica (its callhub, hub and workers first on
        # the path), fed by the same commits: a regression shows in one run.
        # PYTHONSAFEPATH: `python -m` would put the working directory (this
        # checkout) first on the path, ahead of PYTHONPATH.
        peers[1:1] = [CallhubPeer(feed, [redis.pid], name="base",
                                  env={"PYTHONPATH": str(args.baseline.resolve()),
                                       "PYTHONSAFEPATH": "1"})]
    return peers


def write_floor(subscribers: int = 1000, events: int = 150) -> dict[str, float]:
    """``bench.write_floor`` in a process of its own (no event loop, no client
    processes competing): the CPU of one small write per delivery here."""
    done = subprocess.run([sys.executable, "-m", "bench.write_floor", str(subscribers),
                           str(events)], capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"bench.write_floor failed: {done.stderr[-500:]}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


@dataclass
class Engines:
    """The Redis the run's peers use: a private single node, and with
    ``--cluster`` a Redis Cluster for the callhub peer called ``cluster``."""

    single: LocalRedis
    cluster_url: str | None = None
    cluster_pids: tuple[int | None, ...] = ()


async def run(plan: Plan, engines: Engines, clients: Clients, nchan_dir: Path | None,
              status: StatusLine, args: argparse.Namespace, mode: Mode | None = None) -> int:
    feed = RedisFeed(Settings(redis_url=engines.single.url, shards=args.shards))
    feeds = [feed]
    profile_dir = Path(args.py_spy) if args.py_spy else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    try:
        bench = Bench(plan, clients, status, profile_dir)
        peers = make_peers(engines, feeds, nchan_dir, args)
        if mode is not None:
            status.update("measuring the one-write-per-delivery floor ...", force=True)
            await mode(peers, clients, status, quick=args.quick, floor=write_floor())
            return 0
        floor: dict[str, float] | None = None
        if any(isinstance(peer, NchanPeer) for peer in peers) and not args.quick:
            status.update("measuring the one-write-per-delivery floor ...", force=True)
            floor = write_floor()
        rows: list[Row] = []
        for subs in plan.subscriber_counts:
            for all_events in (True, False):
                scenario = Scenario(subs, all_events)
                for peer in peers:
                    row = Row(peer.name, subs, scenario.label)
                    status.update(f"{peer.name}: {subs} subscribers, {scenario.label}: "
                                  "latency ...", force=True)
                    try:
                        await bench.latency(peer, scenario, row)
                    except BenchError as error:
                        row.problems.append(f"latency phase failed: {error}")
                    status.update(f"{peer.name}: {subs} subscribers, {scenario.label}: "
                                  "burst ...", force=True)
                    try:
                        await bench.burst(peer, scenario, row)
                    except BenchError as error:
                        row.problems.append(f"burst phase failed: {error}")
                    rows.append(row)
        idle: list[dict[str, Any]] = []
        if not args.no_idle:
            # Memory per subscriber is the replica's: one engine is enough.
            for peer in peers:
                if peer.name == "cluster":
                    continue
                status.update(f"{peer.name}: {plan.idle:,} idle subscribers ...", force=True)
                await feed.client.flushdb()
                idle.append(await bench.idle(peer, plan.idle))
        catch_ups: list[dict[str, Any]] = []
        if not args.no_catch_up:
            for peer in peers:
                if isinstance(peer, CallhubPeer) and not isinstance(peer, NaivePeer):
                    status.update(f"{peer.name}: catch-up ...", force=True)
                    catch_ups.append(await bench.catch_up(peer))
        status.clear()
    finally:
        for one in feeds:
            await one.close()
    report(plan, rows, idle, catch_ups, resource.getrlimit(resource.RLIMIT_NOFILE)[0],
           args.shards, clients=len(clients.pids), nchan_storage=args.nchan_storage,
           floor=floor)
    for path in bench.profiles:
        print(f"\npy-spy profile of callhub, {path.name} ({path}):")
        print("\n".join(summarize_profile(path)))
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: unwind through the finally blocks that stop every server."""
    raise SystemExit(128 + signum)


class Mode(Protocol):
    """A measurement run in place of the standard phases, on the same peers and
    clients (``bench.fanout_capacity.run``)."""

    def __call__(self, peers: Sequence[Peer], clients: Clients, status: StatusLine, *,
                 quick: bool, floor: dict[str, float] | None) -> Awaitable[object]: ...


def main(argv: Sequence[str] | None = None, *, mode: Mode | None = None,
         description: str | None = None) -> int:
    """The bench's command line; ``mode`` (default: the standard phases) and
    ``description`` come from a module that runs its own measurement here."""
    parser = argparse.ArgumentParser(
        description=description or (__doc__.splitlines()[0] if __doc__ else None))
    parser.add_argument("--quick", action="store_true", help="a small smoke run (< 60 s)")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="also run the replica of an earlier checkout in DIR (e.g. "
                             "`git worktree add DIR <rev>`), as the peer `base`")
    parser.add_argument("--peers",
                        help="which peers to run, comma-separated (default: callhub, "
                        "nchan and naive; callhub and cluster with --cluster)")
    parser.add_argument("--subs", help="subscriber counts, comma-separated (default 100,1000)")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-memory phase")
    parser.add_argument("--no-catch-up", action="store_true", help="skip the catch-up phase")
    parser.add_argument("--cluster", action="store_true",
                        help="also run callhub on a private 3-master Redis Cluster (peer "
                        "'cluster') and print its ratio to the single node; implies "
                        "--shards 6 for both and, unless --peers says otherwise, "
                        "--peers callhub,cluster")
    parser.add_argument("--cluster-url", metavar="URL",
                        help="like --cluster, on a running Redis Cluster (a scratch one: "
                        "it is flushed) named by one of its nodes")
    parser.add_argument("--shards", type=int,
                        help="CALLHUB_SHARDS for the callhub peers (default 1, 6 with "
                        "--cluster; the naive peer reads shard 0 only, so it needs 1)")
    parser.add_argument("--linger", metavar="MS,...", default="",
                        help="also run callhub with these CALLHUB_STREAM_LINGER values "
                        "(peers ch-<ms>ms), e.g. 0 to see it without coalescing")
    parser.add_argument("--nchan-storage", choices=NCHAN_STORAGES, default="memory",
                        help="nchan's message store: its own shared memory (default, the "
                        "faster here) or Redis-backed (nchan_redis_pass, as in the issue's "
                        "reference run)")
    parser.add_argument("--clients", type=int, default=CLIENT_PROCESSES,
                        help=f"client processes holding the subscribers (default "
                        f"{CLIENT_PROCESSES}; every peer gets the same)")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="record callhub's CPU profile (py-spy, raw) per phase into DIR "
                        "and print the hottest frames (adds some overhead)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    if mode is not None and args.peers is None:
        args.peers = "callhub,nchan"
    cluster = args.cluster or args.cluster_url is not None
    if args.peers is None:
        args.peers = "callhub,cluster" if cluster else "callhub,nchan,naive"
    args.peers = {name.strip() for name in args.peers.split(",") if name.strip()}
    known = {"callhub", "nchan", "naive"} | ({"cluster"} if cluster else set())
    if not args.peers <= known:
        parser.error(f"unknown peers: {sorted(args.peers - known)} (the peer 'cluster' "
                     "needs --cluster or --cluster-url)")
    try:
        args.linger = [int(ms) for ms in args.linger.split(",") if ms.strip()]
    except ValueError:
        parser.error("--linger takes milliseconds, e.g. 0,2")
    if args.baseline is not None and not (args.baseline / "hub" / "app.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a callhub checkout (no hub/app.py)")
    if args.shards is None:
        args.shards = 6 if cluster else 1
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    if "naive" in args.peers and args.shards != 1:
        parser.error("the naive peer reads shard 0 only: leave it out or use --shards 1")
    if args.subs:
        try:
            counts = tuple(int(n) for n in args.subs.split(","))
        except ValueError:
            parser.error("--subs takes numbers, e.g. 100,1000")
        plan = dataclasses.replace(plan, subscriber_counts=counts)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("fanout: redis-server is not on PATH", file=sys.stderr)
        return 2
    nofile = raise_nofile()
    need = plan.idle + 200
    if nofile < need:
        print(f"fanout: the open-files hard limit is {nofile}, {need} are needed per process",
              file=sys.stderr)
        return 2
    has_nchan = shutil.which("nginx") is not None and Path(NCHAN_MODULE).exists()
    if not has_nchan:
        print("fanout: nginx or libnginx-mod-nchan is missing: no nchan peer "
              "(apt-get install nginx libnginx-mod-nchan)", file=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    status = StatusLine(sys.stderr)
    clients = Clients(args.clients)  # forked before any event loop or connection exists
    # maxclients: the naive app holds one Redis connection per open stream.
    local = LocalRedis(redis_server, ["--maxclients", str(max(10_000, nofile - 1000))])
    private_cluster = LocalRedisCluster(redis_server) if args.cluster and not args.cluster_url \
        else None
    workdir = tempfile.TemporaryDirectory(prefix="fanout-nchan-")
    try:
        os.chmod(workdir.name, 0o755)  # nginx workers run as nobody
        local.start()
        engines = Engines(local, args.cluster_url)
        if private_cluster is not None:
            status.update("starting a 3-master Redis Cluster ...", force=True)
            private_cluster.start()
            engines = Engines(local, private_cluster.url,
                              tuple(node.pid for node in private_cluster.nodes))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            try:
                return runner.run(run(plan, engines, clients,
                                      Path(workdir.name) if has_nchan and "nchan" in args.peers
                                      else None, status, args, mode))
            finally:
                runner.run(clients.stop())
    except BenchError as error:
        status.clear()
        print(f"fanout: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        local.stop()
        if private_cluster is not None:
            private_cluster.stop()
        workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
