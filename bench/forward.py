"""Webhook delivery benchmark: ``callhub forward`` beside a naive SSE-to-POST script.

Run as ``.venv/bin/python -m bench.forward [--quick]`` (or ``make bench-forward``;
needs ``redis-server``).

What runs, each its own process, on 127.0.0.1 and free ports, stopped by PID:
a private redis-server; one ``callhub serve`` replica (webhook subscriptions
are created through its ``POST /v1/webhooks``, and the naive peer reads its
event stream); the receiver, ``bench/webhook_receiver.py`` (raw HTTP/1.1 on
uvloop: it verifies every signature and records, per delivery, its receipt
time and the commit time the event carries); and per configuration:

- ``forward x1``: one ``callhub forward`` process, the subscription's
  (subscription, shard) leases all its own;
- ``forward x2``: two ``callhub forward`` processes, one lease each (as they
  share them out themselves);
- ``naive``: ``bench/naive_forward.py``, what a user writes first: httpx
  reads ``GET /v1/calls/events`` (SSE) from the replica and POSTs each event,
  signed with ``callhub.signing`` the same way, awaiting each POST;
- ``naive c64``: the same script with up to 64 POSTs in flight (a task per
  event: no order within a call any more).

Shards: ``CALLHUB_SHARDS=2`` everywhere, so that two forwarders have two
(subscription, shard) leases to split. Each ``callhub forward`` takes at most
ceil(shards / live forwarders) of a subscription's leases, so for
``forward x2`` the bench waits until each holds one; the leases as they were
first taken and as they were shared out are printed.

Events: 250 concurrent calls (per-call order means one call's events go one
at a time), speech_partial events of about 300 bytes of JSON, round-robin
over the calls, committed with the workers' ``CallPublisher``. Each event
carries its commit time (``CLOCK_MONOTONIC`` ns, the same clock in every
process) in its ``event_id``, stamped just before ``commit_many``; the
receiver takes commit -> receipt latency per delivery.

Phases, per configuration, each with a fresh start as far as events go: a
subscription of its own for the forwarders (created through the API before
it, deleted after it; the forwarder processes run throughout), a new process
for the naive peers; so what one phase left undelivered never counts in, or
holds up, the next (the receiver counts such stragglers as stale).

- steady: 500 events/s for 10 s; latency per delivery (a delivery missing
  2 s after the last commit counts as infinitely late, ``>drain``);
- backlog: the senders are paused (SIGSTOP), 20,000 events committed, the
  senders resumed; the rate is over resume -> last receipt, or over the 12 s
  deadline for a sender that did not get through them; latency there is only
  time spent queued, so none is shown;
- continuous: committing for 6 s as fast as the senders take it (at most 1,000
  events committed but not yet received); the rate and latency of the
  deliveries that arrived in that window (latency is about that lead over the
  rate, when the sender is what limits).

Columns: CPU as a share of one core over the phase (sender: the forwarder
processes together, or the naive script; hub: the replica, idle for the
forwarders; recv: the receiver; redis), and the sender's CPU per delivery;
RSS: each sender's VmRSS after the phase. Before all that, the receiver's own
ceiling is measured (64 connections of signed POSTs from the bench process),
so the report can show it is not what bounds a rate; and what one signed POST
costs with the forwarder's own ``WebhookSender`` (its HTTP client is
workers/forward/connection_pool.py) at 1, 8 and 64 in flight, beside bare
asyncio streams. The issue's targets are printed at the
end: >= 5,000 signed deliveries/s per forwarder process, p99 <= 50 ms at 500
events/s, >= 5x the naive peer. The run also reports what it saw that a
deployment would care about: duplicates, order within a call, bad
signatures, keys the deleted subscriptions left behind, lines logged.

``--py-spy DIR`` records the forwarders' CPU profile (py-spy) over the backlog
and continuous phases and prints the hottest frames (py-spy competes for the
same cores: rates are lower with it). ``--configs`` picks configurations,
``--logs DIR`` keeps every server's output. The full run takes about 3
minutes on 2 cores; ``--quick`` under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

import httpx
import msgspec
import uvloop

from bench.fanout import Feed, Item, RedisFeed, call_starts
from bench.harness import (
    BenchError,
    LocalRedis,
    Server,
    cpu_seconds,
    free_port,
    memory_kb,
    percentile,
    summarize_profile,
)
from bench.webhook_receiver import Dump, Reset, Stats
from callhub.cli.status_line import StatusLine
from callhub.cursor import Cursor
from callhub.settings import Settings
from callhub.signing import new_secret, secret_key, signature_header
from callhub.webhooks import SigningSecret, Subscription, delivery_headers, message_id
from workers.forward.sender import WebhookSender

HOST: Final = "127.0.0.1"
SHARDS: Final = 2
CALLS: Final = 250
STEADY_RATE: Final = 500
LEAD: Final = 1000  # continuous: events committed but not yet received, at most
PUBLISH_BATCH: Final = 256
NAIVE_CONCURRENCY: Final = 64
CEILING_CONNECTIONS: Final = 64
POLL_S: Final = 0.02

TARGET_PER_PROCESS: Final = 5000.0
TARGET_P99_MS: Final = 50.0
TARGET_VS_NAIVE: Final = 5.0

PROFILE_PACKAGES: Final = ("workers/", "callhub/", "httpx/", "httpcore/", "h11/", "redis/",
                           "prometheus_client/", "asyncio/")


@dataclass(frozen=True)
class Plan:
    steady_s: float
    drain_s: float  # steady: how long after the last commit a delivery may still arrive
    backlog: int
    continuous_s: float
    deadline_s: float  # backlog: the most its delivery may take
    ceiling_s: float
    client_requests: int  # POSTs per client measured (a quarter at 64 in flight)


FULL = Plan(10.0, 2.0, 20_000, 6.0, 12.0, 2.0, 1000)
QUICK = Plan(2.0, 1.0, 3_000, 1.5, 4.0, 0.5, 400)


# ---------------------------------------------------------------------------
# Results


@dataclass
class Result:
    config: str
    phase: str
    expected: int
    received: int = 0
    seconds: float = 0.0  # the span the rate is taken over
    latency_ms: list[float] = field(default_factory=list)
    show_latency: bool = True
    rss_mb: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    wall_s: float = 0.0  # the time cpu_s was taken over
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def share(self, role: str) -> float:
        """The role's CPU as a share of one core."""
        return self.cpu_s.get(role, 0.0) / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def sender_us(self) -> float:
        """The senders' CPU per delivery, in microseconds."""
        return self.cpu_s.get("sender", 0.0) * 1e6 / self.received if self.received \
            else math.nan

    def p(self, fraction: float) -> float:
        if not self.show_latency or not self.latency_ms:
            return math.nan
        return percentile(self.latency_ms, fraction)


@dataclass(frozen=True)
class ClientCost:
    label: str
    rate: float  # POSTs/s
    cpu_us: float  # CPU per POST


def check_receipts(result: Result, stats: Stats) -> None:
    """What a receiver relies on, as problems of the result."""
    if stats.bad_signatures:
        result.problems.append(f"{stats.bad_signatures:,} bad signatures")
    if stats.duplicates:
        result.problems.append(f"{stats.duplicates:,} duplicate deliveries")
    if stats.out_of_order:
        result.problems.append(f"{stats.out_of_order:,} out of order within a call")
    if stats.received < result.expected:
        result.problems.append(f"{result.expected - stats.received:,} of "
                               f"{result.expected:,} not received in time")


def _arrays(dump: Dump) -> tuple[array[int], array[int]]:
    receipts: array[int] = array("q")
    commits: array[int] = array("q")
    receipts.frombytes(dump.receipt_ns)
    commits.frombytes(dump.commit_ns)
    return receipts, commits


# ---------------------------------------------------------------------------
# Processes


class CpuWatch:
    """CPU seconds of the processes behind each role, from one moment on."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles
        self.started = time.monotonic()
        self.before = {role: sum(cpu_seconds(pid) for pid in pids)
                       for role, pids in roles.items()}

    def seconds(self) -> tuple[dict[str, float], float]:
        """CPU seconds per role so far, and the wall time they were taken over."""
        return ({role: sum(cpu_seconds(pid) for pid in pids) - self.before[role]
                 for role, pids in self.roles.items()}, time.monotonic() - self.started)


def holder_of(server: Server, within_s: float = 20.0) -> str:
    """The lease holder id a ``callhub forward`` prints as it starts."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for line in server.log_tail(20_000).splitlines():
            if "delivering webhooks from" in line:
                return line.rsplit(" as ", 1)[1].strip()
        if not server.running():
            break
        time.sleep(0.05)  # poll interval, bounded by the deadline
    raise BenchError(f"{server.name} did not start:\n{server.log_tail()}")


@contextlib.contextmanager
def paused(pids: Sequence[int]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the block, and continued however it ends."""
    stopped: list[int] = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


class Profiler:
    """``py-spy record`` on some processes, until stopped (``--py-spy DIR``)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.outputs: list[Path] = []
        self._running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, label: str, pids: Sequence[int], seconds: float) -> None:
        if self.directory is None:
            return
        py_spy = Path(sys.executable).parent / "py-spy"
        for n, pid in enumerate(pids):
            out = self.directory / f"{label}-{n + 1}.txt"
            process = subprocess.Popen(
                [str(py_spy), "record", "-p", str(pid), "-r", "200", "--nonblocking",
                 "-f", "raw", "-o", str(out), "-d", str(int(seconds) + 5)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._running.append((process, out))
        time.sleep(0.3)  # py-spy attaches

    def stop(self) -> None:
        for process, out in self._running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if out.exists():
                self.outputs.append(out)
        self._running = []


# ---------------------------------------------------------------------------
# The shared pieces: Redis, the replica, the receiver


class Rig:
    """Everything the configurations share, and the receiver's control calls."""

    def __init__(self, plan: Plan, redis: LocalRedis, status: StatusLine,
                 profiler: Profiler, logs: Path | None = None) -> None:
        self.plan = plan
        self.logs = logs
        self.redis = redis
        self.status = status
        self.profiler = profiler
        self.settings = Settings(redis_url=redis.url, shards=SHARDS)
        self.feed = RedisFeed(self.settings)
        self.http = httpx.AsyncClient(timeout=10, trust_env=False)
        self.servers: list[Server] = []
        self.hub: Server | None = None
        self.receiver: Server | None = None
        self.deleted: list[str] = []  # subscriptions deleted so far

    def start_server(self, name: str, command: list[str], port: int,
                     env: dict[str, str] | None = None) -> Server:
        """A process of the run; no CALLHUB_* setting of the caller's reaches it (API
        keys, a prefix, cluster mode ...), only what the command line and ``env`` say."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
        server = Server(name, command, port, env={**clean, **(env or {})})
        self.servers.append(server)
        return server

    def stop_server(self, server: Server) -> None:
        server.stop(keep_log=self.log_file(server))
        if server in self.servers:
            self.servers.remove(server)

    def log_file(self, server: Server) -> Path | None:
        """With ``--logs DIR``: where what the server wrote is kept, DIR/<name>.log."""
        if self.logs is None:
            return None
        name = "".join(c if c.isalnum() else "-" for c in server.name).strip("-")
        return self.logs / f"{name}.log"

    def start(self) -> None:
        port = free_port()
        self.receiver = self.start_server(
            "webhook receiver", [sys.executable, "-m", "bench.webhook_receiver",
                                 "--port", str(port)], port)
        self.receiver.wait_ready("/_stats")
        port = free_port()
        self.hub = self.start_server("callhub serve", [
            sys.executable, "-m", "callhub.cli", "serve", "--host", HOST, "--port", str(port),
            "--redis-url", self.redis.url, "--shards", str(SHARDS), "--no-access-log"], port,
            # The receiver is plain http on loopback; a paused naive peer must not
            # be cut off while its backlog waits in the replica.
            env={"CALLHUB_WEBHOOK_ALLOW_HTTP": "1", "CALLHUB_WEBHOOK_ALLOW_PRIVATE": "1",
                 "CALLHUB_SUBSCRIBER_BUFFER": "64m", "CALLHUB_WRITE_TIMEOUT": "120s"})
        self.hub.wait_ready("/healthz")

    async def close(self) -> None:
        for server in reversed(self.servers):
            server.stop(keep_log=self.log_file(server))
        self.servers = []
        await self.http.aclose()
        await self.feed.close()

    @property
    def receiver_url(self) -> str:
        assert self.receiver is not None
        return self.receiver.url

    @property
    def hub_url(self) -> str:
        assert self.hub is not None
        return self.hub.url

    def pids(self, role: str) -> list[int]:
        if role == "hub":
            return [self.hub.pid] if self.hub is not None else []
        if role == "recv":
            return [self.receiver.pid] if self.receiver is not None else []
        return [self.redis.pid] if self.redis.pid is not None else []

    # -- the receiver --------------------------------------------------------------

    async def reset(self, secret: str) -> None:
        """The receiver's counts cleared; from now on it also accepts ``secret``'s
        signatures, and records only events committed from now on."""
        body = msgspec.json.encode(Reset(secret, time.monotonic_ns()))
        response = await self.http.post(self.receiver_url + "/_reset", content=body)
        if response.status_code != 200:
            raise BenchError(f"the receiver refused the reset: {response.status_code}")

    async def stats(self) -> Stats:
        response = await self.http.get(self.receiver_url + "/_stats")
        return msgspec.json.decode(response.content, type=Stats)

    async def dump(self) -> Dump:
        response = await self.http.get(self.receiver_url + "/_dump")
        return msgspec.json.decode(response.content, type=Dump)

    async def wait_received(self, n: int, deadline: float, label: str) -> Stats:
        """Poll until ``n`` deliveries are in or ``deadline`` (monotonic) passes."""
        started = time.monotonic()
        while True:
            stats = await self.stats()
            now = time.monotonic()
            if stats.received >= n or now >= deadline:
                return stats
            self.status.update(f"{label}: {stats.received:,}/{n:,} delivered, "
                               f"{stats.received / (now - started):,.0f}/s")
            await asyncio.sleep(0.05)

    # -- the replica ---------------------------------------------------------------

    async def create_subscription(self, name: str) -> tuple[str, str]:
        """A new subscription to the receiver, through the API: (id, secret)."""
        response = await self.http.post(self.hub_url + "/v1/webhooks", json={
            "name": name, "url": self.receiver_url + "/hook"})
        if response.status_code != 201:
            raise BenchError(f"POST /v1/webhooks answered {response.status_code}: "
                             f"{response.text[:500]}")
        answer = response.json()
        return str(answer["id"]), str(answer["secret"])

    async def delete_subscription(self, subscription_id: str) -> None:
        response = await self.http.delete(f"{self.hub_url}/v1/webhooks/{subscription_id}")
        if response.status_code >= 300:
            raise BenchError(f"DELETE /v1/webhooks/{subscription_id} answered "
                             f"{response.status_code}")
        self.deleted.append(subscription_id)

    async def leftovers(self) -> list[str]:
        """Keys of the subscriptions deleted during the run that exist now (the API
        deletes them all; once every forwarder has stopped nothing should be left)."""
        found: list[str] = []
        for subscription_id in self.deleted:
            async for key in self.feed.client.scan_iter(match=f"*webhook:{subscription_id}:*"):
                found.append(key.decode() if isinstance(key, bytes) else str(key))
        return found

    async def holders(self, subscription_id: str) -> list[str | None]:
        keys = self.settings.keyspace
        values = [await self.feed.client.get(keys.webhook_lease(shard, subscription_id))
                  for shard in range(SHARDS)]
        return [value.decode() if isinstance(value, bytes) else None for value in values]

    async def commit(self, items: Sequence[Item]) -> None:
        await self.feed.publish(items)

    # -- the receiver's ceiling ----------------------------------------------------

    async def ceiling(self) -> tuple[float, float]:
        """Deliveries/s the receiver takes from 64 connections of signed POSTs, and
        its CPU share meanwhile."""
        secret = new_secret()
        await self.reset(secret)
        key = secret_key(secret)
        feed = Feed([f"ceiling-{n:04d}" for n in range(CALLS)])
        requests: list[bytes] = []
        for n in range(20_000):
            body = feed.timed().data
            message = f"msg_ceiling_{n}"
            stamp = int(time.time())
            requests.append(
                b"POST /hook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"webhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\n"
                b"content-length: %d\r\n\r\n%s" % (
                    message.encode(), stamp,
                    signature_header([key], message, stamp, body).encode(), len(body), body))
        stop_at = time.monotonic() + self.plan.ceiling_s
        counts = [0] * CEILING_CONNECTIONS
        watch = CpuWatch({"recv": self.pids("recv")})

        async def one(index: int) -> None:
            reader, writer = await asyncio.open_connection(HOST, self.receiver_port)
            try:
                n = index
                while time.monotonic() < stop_at:
                    writer.write(requests[n % len(requests)])
                    head = await reader.readuntil(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise BenchError(f"the receiver answered {head[:40]!r}")
                    counts[index] += 1
                    n += CEILING_CONNECTIONS
            finally:
                writer.close()

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(CEILING_CONNECTIONS)))
        wall = time.monotonic() - started
        cpu, cpu_wall = watch.seconds()
        return sum(counts) / wall, cpu["recv"] / cpu_wall

    @property
    def receiver_port(self) -> int:
        assert self.receiver is not None
        return self.receiver.port

    # -- what one POST costs -------------------------------------------------------

    async def client_costs(self) -> list[ClientCost]:
        """The CPU one signed POST to the receiver costs, in this process: the
        forwarder's own ``WebhookSender`` (as ``callhub forward`` builds it)
        at 1, 8 and 64 in flight, a bare asyncio-streams client at 64, and the
        headers alone. Every request is built the forwarder's way: a ``Cursor``
        and ``delivery_headers`` (which signs) per event."""
        secret = new_secret()
        await self.reset(secret)
        subscription = Subscription(id="wh_bench_client", name="bench",
                                    url=self.receiver_url + "/hook",
                                    secrets=[SigningSecret(secret)])
        feed = Feed([f"client-{n:04d}" for n in range(CALLS)])
        count = self.plan.client_requests
        items = iter([feed.timed() for _ in range(count * 8)])  # built before any clock
        numbers = itertools.count(1)

        def signed() -> tuple[bytes, list[tuple[str, str]]]:
            item = next(items)
            n = next(numbers)
            headers = delivery_headers(
                subscription, message=message_id(subscription.id, f"0-{n}-0"), body=item.data,
                event_type="speech_partial", session_id=item.event.session_id,
                seq=str(item.event.seq), cursor=Cursor.at(SHARDS, 0, (n, 0)).encode())
            return item.data, headers

        async def measure(label: str, requests: int, in_flight: int,
                          post: Callable[[int], Awaitable[None]]) -> ClientCost:
            left = requests

            async def worker(index: int) -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await post(index)

            await post(0)  # the first connection is not what is measured
            cpu, started = time.process_time(), time.monotonic()
            await asyncio.gather(*(worker(i) for i in range(in_flight)))
            wall, cpu = time.monotonic() - started, time.process_time() - cpu
            return ClientCost(label, requests / wall, cpu * 1e6 / requests)

        costs: list[ClientCost] = []
        for in_flight in (1, 8, 64):
            sender = WebhookSender(10.0, allow_private=True)

            async def with_sender(index: int, sender: WebhookSender = sender) -> None:
                body, headers = signed()
                result = await sender.send(subscription.url, body, headers)
                if not result.delivered:
                    raise BenchError(f"the receiver answered {result.status_code} "
                                     f"{result.error}")

            try:
                costs.append(await measure(f"WebhookSender, {in_flight} in flight",
                                           count // (4 if in_flight == 64 else 1), in_flight,
                                           with_sender))
            finally:
                await sender.aclose()

        streams: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

        async def bare(index: int) -> None:
            if index not in streams:
                streams[index] = await asyncio.open_connection(HOST, self.receiver_port)
            reader, writer = streams[index]
            body, headers = signed()
            writer.write(b"POST /hook HTTP/1.1\r\nhost: %s:%d\r\n%scontent-length: %d\r\n\r\n%s"
                         % (HOST.encode(), self.receiver_port,
                            "".join(f"{k}: {v}\r\n" for k, v in headers).encode(), len(body),
                            body))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise BenchError(f"the receiver answered {head[:40]!r}")

        try:
            costs.append(await measure("bare asyncio streams, 64 in flight", count * 4,
                                       CEILING_CONNECTIONS, bare))
        finally:
            for _, writer in streams.values():
                writer.close()
        cpu = time.process_time()
        for _ in range(count):
            signed()
        costs.append(ClientCost("the headers alone (Cursor, delivery_headers)", 0.0,
                                (time.process_time() - cpu) * 1e6 / count))
        return costs


# ---------------------------------------------------------------------------
# Configurations


class Config:
    """The senders of one configuration. Each phase starts them afresh as far as
    events go (``begin``/``end``): what one phase left undelivered never counts in,
    or slows, the next."""

    name = ""

    def __init__(self, rig: Rig, tag: str) -> None:
        self.rig = rig
        self.sessions = [f"{tag}-{n:05d}" for n in range(CALLS)]
        self.feed = Feed(self.sessions)
        self.senders: list[Server] = []
        self.notes: list[str] = []

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.senders]

    async def setup(self) -> None:
        """The calls started before anything delivers (their call_started is not timed)."""
        await self.rig.commit([Item(event, b"") for event in call_starts(self.sessions)])
        await asyncio.sleep(0.01)  # a subscription created from now on starts after them

    async def begin(self) -> None:
        raise NotImplementedError

    async def end(self) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        for server in self.senders:
            self.rig.stop_server(server)
        self.senders = []

    def check_alive(self) -> None:
        for server in self.senders:
            if not server.running():
                raise BenchError(f"{server.name} exited:\n{server.log_tail()}")


class ForwardConfig(Config):
    """``callhub forward`` processes, running throughout; each phase has a
    subscription of its own (created through the API, deleted after it)."""

    def __init__(self, rig: Rig, processes: int) -> None:
        super().__init__(rig, f"fw{processes}")
        self.processes = processes
        self.name = f"forward x{processes}"
        self.subscription_id = ""
        self.holders: list[str] = []

    async def setup(self) -> None:
        await super().setup()
        for n in range(self.processes):
            port = free_port()
            self.senders.append(self.rig.start_server(f"callhub forward #{n + 1}", [
                sys.executable, "-m", "callhub.cli", "forward", "--redis-url", self.rig.redis.url,
                "--shards", str(SHARDS), "--metrics-port", str(port)], port,
                # The receiver listens on 127.0.0.1: allowed, as in the tests.
                env={"CALLHUB_WEBHOOK_ALLOW_PRIVATE": "1"}))
        for server in self.senders:
            server.wait_ready("/metrics")
            self.holders.append(holder_of(server))

    def _names(self, held: Sequence[str | None]) -> str:
        names = {holder: f"#{n + 1}" for n, holder in enumerate(self.holders)}
        return ", ".join(f"shard {s} {names.get(h or '', 'nobody')}" for s, h in enumerate(held))

    async def begin(self) -> None:
        rig = self.rig
        self.subscription_id, secret = await rig.create_subscription(f"bench {self.name}")
        await rig.reset(secret)
        taken = await self._wait_leases(all, 10.0)
        if not self.notes:
            self.notes.append(f"leases as the forwarders took them: {self._names(taken)}")
        if self.processes > 1:
            # Each forwarder takes at most ceil(shards / live forwarders): the
            # first to see the subscription takes its share, the others the rest.
            spread = min(self.processes, SHARDS)
            held = await self._wait_leases(lambda held: all(held) and len(set(held)) == spread,
                                           15.0)
            if len(self.notes) < 2:
                self.notes.append(f"shared out: {self._names(held)}")

    async def _wait_leases(self, done: Callable[[list[str | None]], bool], within_s: float
                           ) -> list[str | None]:
        deadline = time.monotonic() + within_s
        while True:
            held = await self.rig.holders(self.subscription_id)
            if done(held):
                return held
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: the leases are not as expected after "
                                 f"{within_s:g} s: {self._names(held)}")
            self.check_alive()
            await asyncio.sleep(0.05)

    async def end(self) -> None:
        """The subscription deleted: the forwarders let it go at their next refresh,
        the one that takes up the next phase's (its few POSTs still in flight then
        are stale to the receiver)."""
        await self.rig.delete_subscription(self.subscription_id)


class NaiveConfig(Config):
    """``bench/naive_forward.py``, one process per phase (a phase's leftovers die
    with it)."""

    def __init__(self, rig: Rig, concurrency: int) -> None:
        super().__init__(rig, f"nv{concurrency}")
        self.concurrency = concurrency
        self.name = "naive" if concurrency == 1 else f"naive c{concurrency}"
        self.notes.append(f"{self.concurrency} POST{'s' if concurrency > 1 else ''} in flight"
                          + ("" if concurrency == 1 else ", no order within a call"))

    async def begin(self) -> None:
        rig = self.rig
        secret = new_secret()
        await rig.reset(secret)
        server = rig.start_server(self.name, [
            sys.executable, "-m", "bench.naive_forward", rig.hub_url + "/v1/calls/events",
            rig.receiver_url + "/hook", "--concurrency", str(self.concurrency)], 0,
            env={"NAIVE_SECRET": secret})
        self.senders.append(server)
        deadline = time.monotonic() + 20
        while "connected" not in server.log_tail():
            if time.monotonic() > deadline or not server.running():
                raise BenchError(f"{self.name} did not connect:\n{server.log_tail()}")
            await asyncio.sleep(0.05)

    async def end(self) -> None:
        await self.teardown()


# ---------------------------------------------------------------------------
# Phases


class Phases:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.plan = rig.plan

    async def run(self, config: Config) -> list[Result]:
        results = []
        for phase in (self.steady, self.backlog, self.continuous):
            await config.begin()
            try:
                results.append(await phase(config))
                config.check_alive()
            finally:
                await config.end()
        return results

    def watch(self, config: Config) -> CpuWatch:
        rig = self.rig
        return CpuWatch({"sender": config.pids, "hub": rig.pids("hub"),
                         "recv": rig.pids("recv"), "redis": rig.pids("redis")})

    def finish(self, result: Result, config: Config, watch: CpuWatch) -> None:
        result.cpu_s, result.wall_s = watch.seconds()
        result.rss_mb = [memory_kb(pid) / 1024 for pid in config.pids]

    async def steady(self, config: Config) -> Result:
        rig, plan = self.rig, self.plan
        label = f"{config.name}: steady {STEADY_RATE}/s"
        rig.status.update(f"{label} for {plan.steady_s:g} s ...", force=True)
        total = int(STEADY_RATE * plan.steady_s)
        result = Result(config.name, f"steady {STEADY_RATE}/s", total)
        watch = self.watch(config)
        started = time.monotonic()
        first_ns = time.monotonic_ns()
        sent = 0
        while sent < total:
            due = min(total, int(STEADY_RATE * (time.monotonic() - started)) + 1) - sent
            if due > 0:
                await rig.commit([config.feed.timed() for _ in range(due)])
                sent += due
            await asyncio.sleep(0.004)
            rig.status.update(f"{label}: {sent:,}/{total:,} committed")
        stats = await rig.wait_received(total, time.monotonic() + plan.drain_s, label)
        self.finish(result, config, watch)
        receipts, commits = _arrays(await rig.dump())
        result.received = stats.received
        result.latency_ms = [(r - c) / 1e6 for r, c in zip(receipts, commits, strict=True)]
        result.latency_ms += [math.inf] * max(0, total - len(result.latency_ms))
        if receipts:
            result.seconds = (max(receipts) - first_ns) / 1e9
        check_receipts(result, stats)
        return result

    async def backlog(self, config: Config) -> Result:
        rig, plan = self.rig, self.plan
        n = plan.backlog
        label = f"{config.name}: backlog of {n:,}"
        rig.status.update(f"{label} ...", force=True)
        result = Result(config.name, f"backlog {n:,}", n, show_latency=False)
        items = [config.feed.timed() for _ in range(n)]
        with paused(config.pids):
            committed = time.monotonic()
            await rig.commit(items)
            commit_s = time.monotonic() - committed
            resumed_ns = time.monotonic_ns()
        watch = self.watch(config)
        if isinstance(config, ForwardConfig):
            rig.profiler.start(config.name.replace(" ", "-"), config.pids,
                               plan.deadline_s + plan.continuous_s + 10)
        stats = await rig.wait_received(n, time.monotonic() + plan.deadline_s, label)
        waited_ns = time.monotonic_ns()
        self.finish(result, config, watch)
        receipts, _ = _arrays(await rig.dump())
        result.received = stats.received
        complete = stats.received >= n
        result.seconds = ((max(receipts) if complete else waited_ns) - resumed_ns) / 1e9
        result.note = (f"{n:,} committed in {commit_s:.2f} s while paused; "
                       + (f"all delivered {result.seconds:.2f} s after the resume"
                          if complete else f"{stats.received:,} delivered in "
                          f"{result.seconds:.1f} s (the rate is over that time)")
                       + f"; the receiver had {stats.connections} connections open")
        check_receipts(result, stats)
        return result

    async def continuous(self, config: Config) -> Result:
        rig, plan = self.rig, self.plan
        label = f"{config.name}: continuous"
        rig.status.update(f"{label} for {plan.continuous_s:g} s ...", force=True)
        result = Result(config.name, "continuous", 0)
        received = 0
        committed = 0
        done = asyncio.Event()

        async def poll() -> None:
            nonlocal received
            while not done.is_set():
                received = (await rig.stats()).received
                await asyncio.sleep(POLL_S)

        poller = asyncio.create_task(poll())
        watch = self.watch(config)
        start_ns = time.monotonic_ns()
        stop_at = time.monotonic() + plan.continuous_s
        try:
            while time.monotonic() < stop_at:
                room = min(PUBLISH_BATCH, LEAD - (committed - received))
                if room < 16:
                    await asyncio.sleep(0.002)
                    continue
                await rig.commit([config.feed.timed() for _ in range(room)])
                committed += room
                rig.status.update(f"{label}: {committed:,} committed, {received:,} delivered")
            end_ns = time.monotonic_ns()
            self.finish(result, config, watch)
        finally:
            done.set()
            await poller
            rig.profiler.stop()
        stats = await rig.stats()
        receipts, commits = _arrays(await rig.dump())
        window = [(r, c) for r, c in zip(receipts, commits, strict=True) if r <= end_ns]
        result.expected = result.received = len(window)
        result.seconds = (end_ns - start_ns) / 1e9
        result.latency_ms = [(r - c) / 1e6 for r, c in window]
        result.note = (f"{committed:,} committed in {result.seconds:.1f} s, at most {LEAD:,} "
                       f"ahead of the receiver; {len(window):,} delivered within that time")
        check_receipts(result, stats)
        return result


# ---------------------------------------------------------------------------
# Report


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return ">drain" if math.isinf(value) else f"{value:.1f}"


def report(plan: Plan, results: list[Result], ceiling: tuple[float, float],
           costs: Sequence[ClientCost], notes: dict[str, str]) -> None:
    print()
    print(f"Webhook deliveries to one local receiver: {CALLS} concurrent calls, "
          f"CALLHUB_SHARDS={SHARDS}, {os.cpu_count()} CPUs")
    head = (f"{'configuration':<12} {'phase':<14} {'delivered':>9} {'deliv/s':>8} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'sender':>6} {'us/dlv':>6} "
            f"{'hub':>5} {'recv':>5} {'redis':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        rss = "/".join(f"{mb:.0f}" for mb in r.rss_mb) or "-"
        shares = [f"{r.share(role):.0%}" for role in ("sender", "hub", "recv", "redis")]
        print(f"{r.config:<12} {r.phase:<14} {r.received:>9,} {r.rate:>8,.0f} "
              f"{_ms(r.p(0.50)):>7} {_ms(r.p(0.99)):>7} {rss:>7} {shares[0]:>6} "
              f"{r.sender_us:>6,.0f} {shares[1]:>5} {shares[2]:>5} {shares[3]:>5}")
    print("(deliv/s: steady over first commit -> last receipt; backlog over resume -> last "
          "receipt; continuous: deliveries within the window / the window. p50/p99: "
          "commit -> receipt, a delivery missing after the drain counts as >drain; none for "
          "a backlog. sender, hub, recv, redis: CPU as a share of one core over the phase; "
          "sender: the forwarder processes together, or the naive script; us/dlv: the "
          "sender's CPU per delivery. RSS: VmRSS of each sender after the phase)")
    rate, share = ceiling
    busiest = max((r.share("recv") for r in results), default=0.0)
    best = max((r.rate for r in results), default=0.0)
    print(f"\nReceiver ceiling: {rate:,.0f} signed deliveries/s from {CEILING_CONNECTIONS} "
          f"connections, at {share:.0%} of a core; {rate / best if best else 0:.1f}x the best "
          f"rate above, and its CPU share in the phases peaked at {busiest:.0%}: it is not "
          "the bottleneck." if best and rate > 1.5 * best and busiest < 0.7 else
          f"\nReceiver ceiling: {rate:,.0f} deliveries/s at {share:.0%} of a core; busiest "
          f"phase {busiest:.0%} (CHECK: the receiver may bound some rates)")
    print("\nWhat one signed POST to the receiver costs (CPU of the bench process, uvloop; "
          "each request with a Cursor and delivery_headers, as the forwarder builds it):")
    for cost in costs:
        posts = f"{cost.rate:>8,.0f}/s" if cost.rate else f"{'':>10}"
        print(f"  {cost.label:<46} {posts} {cost.cpu_us:>8,.1f} us CPU each")
    print()
    for config, note in notes.items():
        print(f"{config}: {note}")
    for r in results:
        if r.note:
            print(f"{r.config}, {r.phase}: {r.note}")
    problems = [(r, p) for r in results for p in r.problems]
    if problems:
        print("\nproblems seen:")
        for r, p in problems:
            print(f"  {r.config}, {r.phase}: {p}")

    by = {(r.config, r.phase.split()[0]): r for r in results}
    phases = ("steady", "backlog", "continuous")
    naive_name = "naive"
    print("\nRatios of deliveries/s to the naive peer, same phase:")
    print(f"{'':<12} " + " ".join(f"{phase:>10}" for phase in phases))
    for config in dict.fromkeys(r.config for r in results):
        if config == naive_name:
            continue
        cells = []
        for phase in phases:
            mine, naive = by.get((config, phase)), by.get((naive_name, phase))
            cells.append(f"{mine.rate / naive.rate:>10.2f}" if mine and naive and naive.rate
                         else f"{'-':>10}")
        print(f"{config:<12} " + " ".join(cells))

    print("\nTargets:")
    for config, processes in (("forward x1", 1), ("forward x2", 2)):
        for phase in ("backlog", "continuous"):
            measured = by.get((config, phase))
            if measured is None:
                continue
            per = measured.rate / processes
            print(f"  {config} {phase}: {per:,.0f} deliveries/s per forwarder process "
                  f"({'meets' if per >= TARGET_PER_PROCESS else 'BELOW'} >= "
                  f"{TARGET_PER_PROCESS:,.0f})")
        steady = by.get((config, "steady"))
        if steady is not None:
            p99 = steady.p(0.99)
            print(f"  {config} p99 at {STEADY_RATE} events/s: {_ms(p99)} ms "
                  f"({'meets' if p99 <= TARGET_P99_MS else 'MISSES'} <= {TARGET_P99_MS:g} ms)")
    for phase in ("backlog", "continuous"):
        mine, naive = by.get(("forward x1", phase)), by.get((naive_name, phase))
        if mine and naive and naive.rate:
            ratio = mine.rate / naive.rate
            print(f"  forward x1 / naive, {phase}: {ratio:.1f}x "
                  f"({'meets' if ratio >= TARGET_VS_NAIVE else 'BELOW'} >= "
                  f"{TARGET_VS_NAIVE:g}x)")


# ---------------------------------------------------------------------------
# Main


async def run(plan: Plan, redis: LocalRedis, status: StatusLine, args: argparse.Namespace
              ) -> int:
    profile_dir = Path(args.py_spy) if args.py_spy else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(profile_dir)
    logs = Path(args.logs) if args.logs else None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    rig = Rig(plan, redis, status, profiler, logs)
    started, load = time.monotonic(), os.getloadavg()[0]
    results: list[Result] = []
    notes: dict[str, str] = {}
    try:
        status.update("starting the receiver and a callhub serve replica ...", force=True)
        rig.start()
        status.update("measuring the receiver's ceiling ...", force=True)
        ceiling = await rig.ceiling()
        status.update("measuring what one POST costs ...", force=True)
        costs = await rig.client_costs()
        phases = Phases(rig)
        configs: list[Config] = [ForwardConfig(rig, 1), ForwardConfig(rig, 2),
                                 NaiveConfig(rig, 1), NaiveConfig(rig, NAIVE_CONCURRENCY)]
        for config in configs:
            if config.name not in args.configs:
                continue
            status.update(f"{config.name}: starting ...", force=True)
            await config.setup()
            try:
                results += await phases.run(config)
            finally:
                profiler.stop()
                await config.teardown()
            notes[config.name] = "; ".join(config.notes)
        left = await rig.leftovers()
        if left:
            notes["left behind"] = (
                f"{len(left)} keys of the {len(rig.deleted)} subscriptions deleted through the "
                f"API exist after every forwarder stopped, e.g. {', '.join(sorted(left)[:3])}")
        status.clear()
    finally:
        profiler.stop()
        await rig.close()
    notes["run"] = (f"{time.monotonic() - started:.0f} s in all; load average "
                    f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other "
                    "processes on the machine share its cores)")
    report(plan, results, ceiling, costs, notes)
    for path in profiler.outputs:
        print(f"\npy-spy profile, {path.name} ({path}):")
        print("\n".join(summarize_profile(path, packages=PROFILE_PACKAGES)))
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: unwind through the finally blocks that stop every server."""
    raise SystemExit(128 + signum)


CONFIG_NAMES: Final = ("forward x1", "forward x2", "naive", f"naive c{NAIVE_CONCURRENCY}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s)")
    parser.add_argument("--configs", default=",".join(CONFIG_NAMES),
                        help=f"which configurations, comma-separated (default: "
                        f"{','.join(CONFIG_NAMES)})")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="record the forwarders' CPU profile (py-spy, raw) over the backlog "
                        "and continuous phases into DIR and print the hottest frames")
    parser.add_argument("--logs", metavar="DIR",
                        help="keep what every server started wrote, in DIR/<name>.log")
    args = parser.parse_args(argv)
    args.configs = {name.strip() for name in args.configs.split(",") if name.strip()}
    if not args.configs <= set(CONFIG_NAMES):
        parser.error(f"unknown configurations: {sorted(args.configs - set(CONFIG_NAMES))}")
    if args.py_spy and not (Path(sys.executable).parent / "py-spy").exists():
        parser.error("--py-spy needs py-spy in the virtualenv (.venv/bin/pip install py-spy)")
    plan = QUICK if args.quick else FULL
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("forward: redis-server is not on PATH", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    status = StatusLine(sys.stderr)
    redis = LocalRedis(redis_server)
    try:
        redis.start()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run(plan, redis, status, args))
    except BenchError as error:
        status.clear()
        print(f"forward: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())

