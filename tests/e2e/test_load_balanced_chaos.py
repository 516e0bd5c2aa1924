"""docker-compose.yml as processes, under chaos: nothing lost, nothing twice (DESIGN I3).

The topology of the compose file, on loopback: a redis-server with AOF, two
`callhub serve` replicas, a real nginx running deploy/nginx.conf in front of
them, and `callhub worker --simulate` committing realistic calls. Twenty SSE
clients (some filtered) follow the stream through nginx the way EventSource
does: when a stream ends they reconnect through nginx with the last id they
saw as Last-Event-ID; every now and then they also leave on purpose, so
resumes land on both replicas all along.

Chaos, each step waiting on a condition with a deadline, never a fixed sleep:

1. SIGKILL one replica: its clients' streams break, nginx sends their
   reconnects to the other replica, and they resume.
2. Start that replica again on its port: nginx takes it back (after the
   upstream's fail_timeout) and resumes land on it again.
3. Restart Redis (SHUTDOWN; once both replicas' /readyz say it is gone, start
   it on the same port and directory with AOF): the replicas' shard readers
   reconnect, the worker's commits retry, and open streams just go on;
   clients made to resume meanwhile retry until Redis is back.

Then the worker stops (its active calls end cleanly), the clients drain up to
the last committed position, and each client's events are compared with the
truth: every shard log read back from Redis (XRANGE), filtered by the client's
filter. 0 lost, 0 duplicated, per-call order kept, bytes as committed. A
figures table goes to stdout (pytest -s) and tests/artifacts/chaos.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callhub.cursor import Cursor, parse_stream_id
from callhub.keyspace import Keyspace
from callhub.types import StreamId
from tests.support.nginx import Nginx, start_nginx
from tests.support.paths import ARTIFACTS
from tests.support.polling import async_wait_until
from tests.support.processes import HubProcess, free_port, start_hub, stop_process
from tests.support.redis_servers import RedisServer, start_redis_server
from tests.support.sse import parse_frame

SHARDS = 2
KEYS = Keyspace(shards=SHARDS)
# Pings carry the cursor: fast ones let every client, whatever its filter,
# show quickly that it has seen everything up to a position.
HUB_ENV = {"CALLHUB_SHARDS": str(SHARDS), "CALLHUB_PING_INTERVAL": "300ms"}
AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
# ~8 new calls a second at ten times dialog speed: ~150-250 events a second.
WORKER_ARGS = ("--simulate", "--rate", "8", "--speed", "10", "--seed", "7")

# The clients connected from the start; two more follow one call each (below).
FILTERS: list[dict[str, str]] = (
    [{}] * 6
    + [{"event_types": "call_started,speech_final,call_terminated"}] * 3
    + [{"event_types": "dtmf_received,state_transition"}] * 2
    + [{"dialog_name": "helpdesk"}] * 3
    + [{"dialog_name": "billing_menu"}] * 2
    + [{"dialog_name": "helpdesk", "event_types": "speech_partial,speech_final"}] * 2
)


class Routing(msgspec.Struct):
    session_id: str
    seq: int


def covers(cursor: str | None, final: list[StreamId | None]) -> bool:
    if cursor is None:
        return False
    positions = Cursor.decode(cursor, SHARDS).positions
    return all(f is None or (p is not None and p >= f)
               for p, f in zip(positions, final, strict=True))


@dataclass
class Client:
    """An EventSource-like client going through the load balancer."""

    name: str
    params: dict[str, str]
    rng: random.Random
    cursor: str | None = None
    # (the frame's id, its event type, its data) for every event received.
    received: list[tuple[str | None, str, bytes]] = field(default_factory=list)
    connections: int = 0
    drops: int = 0  # streams that ended without the client choosing to
    refused: int = 0  # attempts that got no stream (an error status, no connection)
    reconnect_s: list[float] = field(default_factory=list)  # after drops
    rejoin_s: list[float] = field(default_factory=list)  # after leaving on purpose
    connected: bool = False
    attempts_ended: int = 0  # streams ended and attempts refused, planned or not
    leave: bool = False  # set to make the client leave (and resume) at its next chunk
    wander: bool = True  # leave now and then on purpose, and come back
    final: list[StreamId | None] | None = None
    done: bool = False

    def matches(self, fields: dict[bytes, bytes]) -> bool:
        types = self.params.get("event_types")
        return (
            (not types or fields[b"type"].decode() in types.split(","))
            and fields[b"session_id"].decode() == self.params.get("session_id",
                                                                    fields[b"session_id"].decode())
            and fields[b"dialog"].decode() == self.params.get("dialog_name",
                                                                fields[b"dialog"].decode())
        )

    async def run(self, http: httpx.AsyncClient, url: str) -> None:
        gone_at: float | None = None  # when the last stream ended or the last attempt failed
        planned = False
        failures = 0  # attempts in a row that got no event id (refused, or cut at once)
        while not self.done:
            headers = {"Last-Event-ID": self.cursor} if self.cursor else {}
            streamed = left = False
            cursor_before = self.cursor
            try:
                async with http.stream("GET", f"{url}/v1/calls/events", params=self.params,
                                       headers=headers) as response:
                    if response.status_code == 200:
                        streamed = True
                        self.connections += 1
                        if gone_at is not None:
                            (self.rejoin_s if planned else self.reconnect_s).append(
                                time.monotonic() - gone_at)
                        gone_at, self.connected = None, True
                        left = await self._read(response)
                    else:
                        await response.aread()
            except httpx.TransportError:
                pass  # refused, reset, cut mid-stream, read timeout: reconnect
            finally:
                self.connected = False
                self.attempts_ended += 1
            if self.done:
                return
            if streamed:
                self.drops += not left
                planned = left
            else:
                self.refused += 1
            if gone_at is None:
                gone_at = time.monotonic()
            failures = 0 if left or self.cursor != cursor_before else failures + 1
            if failures:
                # EventSource would wait the stream's retry: (3 s) every time; the
                # test retries at once, then backs off a little while attempts keep
                # failing, so reconnect times measure the system, not the client.
                await asyncio.sleep(min(0.05 * failures, 0.5))

    async def _read(self, response: httpx.Response) -> bool:
        """Record frames until the stream ends (False) or the client leaves (True)."""
        budget = self.rng.randint(30, 300)
        buffer = b""
        async for chunk in response.aiter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                frame = parse_frame(block)
                if frame.id:
                    self.cursor = frame.id
                if frame.event is not None:
                    self.received.append((frame.id, frame.event, frame.data or b""))
                    budget -= 1
            if self.final is not None and covers(self.cursor, self.final):
                self.done = True
                return True
            if self.leave or (self.wander and budget <= 0 and self.final is None):
                self.leave = False
                return True
        return False


@dataclass
class Figures:
    committed: int = 0
    calls: int = 0
    kills: int = 0
    redis_restarts: int = 0
    committed_after_restart: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    altered: int = 0
    unexpected: int = 0
    rows: list[tuple[str, str]] = field(default_factory=list)


def restart_hub(old: HubProcess, redis_url: str) -> HubProcess:
    """`callhub serve` again on the port nginx knows it by."""
    return start_hub(redis_url, env=HUB_ENV, port=int(old.url.rsplit(":", 1)[1]))


def shutdown_redis(server: RedisServer) -> None:
    """SHUTDOWN: a clean stop that fsyncs the AOF.

    Not SIGKILL: with appendfsync everysec a hard kill may lose up to a second
    of acknowledged commits, and the truth this test compares with (the logs
    read back at the end) must hold everything the clients could have been sent.
    No retries: redis-py would retry the command into the closed port for seconds.
    """
    with redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0)) as client:
        client.shutdown()
    server.process.wait(timeout=15)


def start_redis_again(server: RedisServer, directory: str) -> RedisServer:
    """redis-server on the same port and directory, AOF on: it loads what it had."""
    again = start_redis_server(server.port, *AOF, "--dir", directory)
    shutil.rmtree(again.directory, ignore_errors=True)  # the fresh one it made, unused
    return RedisServer(again.port, again.process, directory)


def unready(hub: HubProcess) -> bool:
    """The replica says Redis does not answer."""
    return httpx.get(f"{hub.url}/readyz", timeout=2).status_code == 503


def committed(server: RedisServer) -> int | None:
    """Events in the shard logs now, or None while Redis does not answer."""
    try:
        with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=1) as client:
            return sum(int(client.xlen(KEYS.log(shard))) for shard in range(SHARDS))
    except redis.RedisError:
        return None


async def wait_committed(server: RedisServer, at_least: int, timeout: float, what: str) -> int:
    """Wait until the shard logs hold ``at_least`` events; how many they hold then."""
    count: int | None = None

    def enough() -> bool:
        nonlocal count
        count = committed(server)
        return count is not None and count >= at_least

    try:
        await async_wait_until(enough, timeout=timeout, what=what, interval=0.05,
                               in_thread=True)
    except AssertionError as error:
        raise AssertionError(f"{error} ({count} committed, {at_least} wanted)") from error
    assert count is not None
    return count


def read_truth(server: RedisServer) -> list[list[tuple[bytes, dict[bytes, bytes]]]]:
    with server.client() as client:
        return [client.xrange(KEYS.log(shard)) for shard in range(SHARDS)]  # type: ignore[misc]


def check(clients: list[Client], truth: list[list[tuple[bytes, dict[bytes, bytes]]]],
          figures: Figures) -> list[str]:
    """Each client against the truth; returns one line per problem found."""
    problems: list[str] = []
    for client in clients:
        expected: dict[tuple[str, int], bytes] = {}
        order: dict[str, list[int]] = defaultdict(list)
        for entries in truth:
            for _, fields in entries:
                if client.matches(fields):
                    key = (fields[b"session_id"].decode(), int(fields[b"seq"]))
                    expected[key] = fields[b"data"]
                    order[key[0]].append(key[1])
        got: list[tuple[str, int]] = []
        for _, event, data in client.received:
            if event == "stream_reset":
                figures.unexpected += 1
                problems.append(f"{client.name}: a stream_reset")
                continue
            routing = msgspec.json.decode(data, type=Routing)
            key = (routing.session_id, routing.seq)
            got.append(key)
            if key not in expected:
                figures.unexpected += 1
                problems.append(f"{client.name}: {key} does not match its filter or is unknown")
            elif expected[key] != data:
                figures.altered += 1
                problems.append(f"{client.name}: {key} differs from what was committed")
        counts = Counter(got)
        duplicated = sum(n - 1 for n in counts.values())
        lost = [key for key in expected if key not in counts]
        figures.duplicated += duplicated
        figures.lost += len(lost)
        if duplicated:
            problems.append(f"{client.name}: {duplicated} duplicated, e.g. "
                            f"{[k for k, n in counts.items() if n > 1][:3]}")
        if lost:
            problems.append(f"{client.name} ({client.params}): {len(lost)} lost, e.g. {lost[:3]}")
        per_call: dict[str, list[int]] = defaultdict(list)
        for sid, seq in got:
            per_call[sid].append(seq)
        for sid, seqs in per_call.items():
            deduplicated = list(dict.fromkeys(seqs))
            if deduplicated != [s for s in order[sid] if (sid, s) in counts]:
                figures.out_of_order += 1
                problems.append(f"{client.name}: call {sid} out of order: {seqs[:20]}")
    return problems


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = ["load-balanced chaos (tests/e2e/test_load_balanced_chaos.py)", ""]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_clients_behind_nginx_lose_nothing_across_replica_kills_and_redis_restarts(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    rng = random.Random(20261124)
    server = await asyncio.to_thread(start_redis_server, free_port(), *AOF)
    directory = server.directory
    hubs: list[HubProcess] = []
    nginx: Nginx | None = None
    worker: subprocess.Popen[bytes] | None = None
    tasks: list[asyncio.Task[None]] = []
    figures = Figures()
    http = httpx.AsyncClient(timeout=httpx.Timeout(5, read=10),
                             limits=httpx.Limits(max_connections=100))
    try:
        hubs = list(await asyncio.gather(*(
            asyncio.to_thread(start_hub, server.url, env=HUB_ENV, log_dir=tmp_path)
            for _ in range(2))))
        nginx = await asyncio.to_thread(
            start_nginx, tmp_path / "nginx", [h.url.removeprefix("http://") for h in hubs])
        lb = nginx.url

        clients = [Client(f"c{n:02d}", params, random.Random(rng.random()))
                   for n, params in enumerate(FILTERS)]
        tasks = [asyncio.create_task(c.run(http, lb)) for c in clients]
        # Every client is subscribed (it has a cursor) before the first commit.
        await async_wait_until(lambda: all(c.cursor for c in clients), timeout=15,
                               what="every client's first cursor", interval=0.02)
        start_cursor = clients[0].cursor

        # TRAFFIC: the simulated worker, as in docker-compose.yml.
        worker_log = tmp_path / "worker.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
        with worker_log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "callhub.cli", "worker", *WORKER_ARGS, "--redis-url",
                 server.url, "--shards", str(SHARDS), "--progress-interval", "1"],
                stdout=out, stderr=subprocess.STDOUT, env=environment)
        await wait_committed(server, 300, 20, "the worker's first events")

        # Two clients follow one call each, from the cursor taken before any
        # commit: they catch up from Redis, then go on live.
        with server.client() as redis_client:
            started = [fields[b"session_id"].decode()
                       for shard in range(SHARDS)
                       for _, fields in redis_client.xrange(KEYS.log(shard), count=200)
                       if fields[b"type"] == b"call_started"]
        for sid in (started[0], started[-1]):
            follower = Client(f"c{len(clients):02d}", {"session_id": sid},
                              random.Random(rng.random()), cursor=start_cursor)
            clients.append(follower)
            tasks.append(asyncio.create_task(follower.run(http, lb)))

        # CHAOS 1: SIGKILL a replica; its clients resume on the other one.
        at_kill = await wait_committed(server, 500, 20, "events before the kill")
        victim = hubs[0]
        earlier = {c.name: len(c.reconnect_s) for c in clients}
        refused_before_kill = sum(c.refused for c in clients)
        victim.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.process.wait, 10)
        figures.kills += 1
        await async_wait_until(lambda: sum(c.drops for c in clients) > 0, timeout=10,
                               what="the killed replica's streams to break", interval=0.02)
        await async_wait_until(lambda: all(c.connected and len(c.reconnect_s) == c.drops
                                           for c in clients), timeout=15,
                               what="every client to be streaming again", interval=0.02)
        after_kill = [s for c in clients for s in c.reconnect_s[earlier[c.name]:]]
        # nginx tried the dead replica, failed to connect, and passed the request
        # on to the live one (proxy_next_upstream): no client saw an error.
        refused_in_kill = sum(c.refused for c in clients) - refused_before_kill
        await wait_committed(server, at_kill + 200, 20, "events after the kill")

        # CHAOS 2: the replica comes back on its port; nginx sends resumes there
        # again once the upstream's fail_timeout (10 s) has passed.
        served_before = victim.output().count("/v1/calls/events")
        hubs[0] = await asyncio.to_thread(restart_hub, victim, server.url)
        await async_wait_until(
            lambda: hubs[0].output().count("/v1/calls/events") > served_before, timeout=25,
            what="a resume served by the restarted replica", interval=0.02)

        # CHAOS 3: restart Redis. Open streams stay open and go on. Nobody leaves
        # on purpose now, but four clients are made to resume while Redis is
        # gone: the replica cannot catch up from the logs then, so those attempts
        # fail (and the clients retry) - and still nothing may be lost.
        for client in clients:
            client.wander = False
        await async_wait_until(lambda: all(c.connected for c in clients), timeout=10,
                               what="every client streaming", interval=0.02)
        drops_before = sum(c.drops for c in clients)
        movers = clients[:4]
        stayers = clients[4:]
        stayer_drops = sum(c.drops for c in stayers)
        mover_attempts = [c.attempts_ended for c in movers]
        at_restart = await wait_committed(server, 0, 5, "Redis before the restart")
        down = time.monotonic()
        await asyncio.to_thread(shutdown_redis, server)
        for hub in hubs:  # both replicas have noticed: Redis is really gone for them
            await async_wait_until(lambda h=hub: unready(h), timeout=10, in_thread=True,
                                   what=f"{hub.url} to see Redis gone", interval=0.02)
        for client in movers:
            client.leave = True
        await async_wait_until(lambda: all(c.attempts_ended >= n + 2
                                           for c, n in zip(movers, mover_attempts, strict=True)),
                               timeout=15, what="resumes attempted while Redis is down to end",
                               interval=0.02)
        server = await asyncio.to_thread(start_redis_again, server, directory)
        redis_down_s = time.monotonic() - down
        figures.redis_restarts += 1
        await wait_committed(server, at_restart + 300, 25, "commits after the Redis restart")
        await async_wait_until(lambda: all(c.connected for c in clients), timeout=15,
                               what="every client streaming", interval=0.02)
        stayers_broken = sum(c.drops for c in stayers) - stayer_drops
        failed_resumes = sum(c.attempts_ended - n - 1
                             for c, n in zip(movers, mover_attempts, strict=True))
        for client in clients:
            client.wander = True

        # The worker stops: its active calls end cleanly (system_hangup).
        worker.terminate()
        worker_status = await asyncio.to_thread(worker.wait, 30)

        # Drain: each client reads on until its cursor covers the last entries.
        truth = await asyncio.to_thread(read_truth, server)
        final = [parse_stream_id(entries[-1][0]) if entries else None for entries in truth]
        for client in clients:
            client.final = final
        await async_wait_until(lambda: all(c.done for c in clients), timeout=20,
                               what="every client to have received up to the last commit",
                               interval=0.02)
        await asyncio.gather(*tasks)

        figures.committed = sum(len(entries) for entries in truth)
        figures.committed_after_restart = figures.committed - at_restart
        figures.calls = sum(fields[b"type"] == b"call_started"
                            for entries in truth for _, fields in entries)
        problems = check(clients, truth, figures)
        reconnects = [s for c in clients for s in c.reconnect_s]
        rejoins = [s for c in clients for s in c.rejoin_s]
        figures.rows = [
            ("clients (filtered)", f"{len(clients)} ({sum(bool(c.params) for c in clients)})"),
            ("calls", str(figures.calls)),
            ("events committed", str(figures.committed)),
            ("  of which after the Redis restart", str(figures.committed_after_restart)),
            ("deliveries", str(sum(len(c.received) for c in clients))),
            ("replica kills (SIGKILL)", str(figures.kills)),
            ("replica restarts", "1"),
            ("Redis restarts (SHUTDOWN, AOF)", f"{figures.redis_restarts} "
                                               f"(down {redis_down_s * 1000:.0f} ms)"),
            ("streams broken by the kill", str(drops_before)),
            ("open streams broken by the Redis restart", str(stayers_broken)),
            ("resumes failed while Redis was down", f"{failed_resumes} (4 clients)"),
            ("max reconnect time after the kill", f"{max(after_kill, default=0) * 1000:.0f} ms"),
            ("max reconnect time after any break", f"{max(reconnects, default=0) * 1000:.0f} ms"),
            ("resumes on purpose (max time)", f"{len(rejoins)} "
                                              f"({max(rejoins, default=0) * 1000:.0f} ms)"),
            ("attempts refused (of them after the kill)",
             f"{sum(c.refused for c in clients)} ({refused_in_kill})"),
            ("lost", str(figures.lost)),
            ("duplicated", str(figures.duplicated)),
            ("calls out of order", str(figures.out_of_order)),
            ("altered or unexpected", str(figures.altered + figures.unexpected)),
            ("worker exit status", str(worker_status)),
            ("test duration", f"{time.monotonic() - began:.1f} s"),
        ]
        report = table(figures.rows)
        print("\n" + report)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "chaos.txt").write_text(report)

        assert not problems, "\n".join(problems[:30])
        assert figures.lost == figures.duplicated == figures.out_of_order == 0
        assert drops_before > 0, "the kill broke no stream: no client was on that replica"
        assert refused_in_kill == 0, "nginx should retry a dead replica's connect on another"
        assert stayers_broken == 0, "a Redis restart must not break open streams"
        assert figures.committed_after_restart >= 300
        assert worker_status == 0, worker_log.read_text()[-2000:]
        assert nginx is not None and not nginx.alerts(), nginx.alerts()
    except BaseException:
        for hub in hubs:
            print(f"--- {hub.url} log (tail)\n{hub.output()[-3000:]}")
        if nginx is not None:
            print(f"--- nginx log (tail)\n{nginx.log()[-3000:]}")
        raise
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await http.aclose()
        if worker is not None:
            stop_process(worker)
        if nginx is not None:
            nginx.stop()
        for hub in hubs:
            hub.stop()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_resume_while_redis_is_down_is_a_503_with_retry_after(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_redis_server, free_port(), *AOF)
    hub: HubProcess | None = None
    try:
        hub = await asyncio.to_thread(start_hub, server.url, env=HUB_ENV, log_dir=tmp_path)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10)) as http:
            cursor: str | None = None
            async with http.stream("GET", f"{hub.url}/v1/calls/events") as response:
                async for chunk in response.aiter_raw():  # the first ping carries a cursor
                    ids = [parse_frame(b).id for b in chunk.split(b"\n\n") if b"id:" in b]
                    if ids and ids[-1]:
                        cursor = ids[-1]
                        break
            assert cursor
            await asyncio.to_thread(shutdown_redis, server)
            await async_wait_until(lambda: unready(hub), timeout=10, in_thread=True,
                                   what="the replica to see Redis gone", interval=0.02)
            async with http.stream("GET", f"{hub.url}/v1/calls/events",
                                   headers={"Last-Event-ID": cursor}) as response:
                with contextlib.suppress(httpx.TransportError):
                    await response.aread()
                status, headers = response.status_code, response.headers
        assert status == 503, f"answered {status}"
        assert "retry-after" in headers
        assert "Exception in ASGI application" not in hub.output()
    finally:
        if hub is not None:
            hub.stop()
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
