"""The webhook forwarder's tests' common ground: calls to publish, a forwarder
in the test's process or ``callhub forward`` as a process, and the checks a
delivery run is judged by (in order per call, duplicates only of what was in
flight, each event under one ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import redis
import redis.asyncio as aioredis

from callhub import events as ev
from callhub.keyspace import Keyspace
from callhub.positions import parse_stream_id
from callhub.settings import Settings
from callhub.types import StreamId
from callhub.webhooks import RECORD_FIELD
from tests.support.receiver import Received
from tests.support.strategies import call_started, dtmf, terminated
from workers.commit.publisher import CallPublisher
from workers.forward.forwarder import Forwarder

# -- calls ---------------------------------------------------------------------------


def call(sid: str, events: int) -> list[ev.Event]:
    """A call of ``events`` events: started, key presses, terminated."""
    return [call_started(sid), *(dtmf(sid, seq) for seq in range(2, events)),
            terminated(sid, events)]


def interleaved(calls: list[list[ev.Event]]) -> list[ev.Event]:
    """Round robin over the calls, each call's events in order."""
    longest = max(len(c) for c in calls)
    return [c[n] for n in range(longest) for c in calls if n < len(c)]


# -- what was delivered --------------------------------------------------------------


def in_order_per_call(received: Sequence[Received]) -> dict[str, list[int]]:
    """Each call's seqs in order of first arrival (a redelivery is not a new event)."""
    seen: set[str] = set()
    by_call: dict[str, list[int]] = {}
    for request in received:
        if request.webhook_id not in seen:
            seen.add(request.webhook_id)
            by_call.setdefault(request.session_id, []).append(request.seq)
    return by_call


def duplicates(received: Sequence[Received]) -> list[Received]:
    """The requests that carried an event already acknowledged (2xx) before them:
    redeliveries, not retries of a failed attempt."""
    acknowledged: set[str] = set()
    again: list[Received] = []
    for request in received:
        if request.webhook_id in acknowledged:
            again.append(request)
        if 200 <= request.status < 300:
            acknowledged.add(request.webhook_id)
    return again


def assert_one_id_per_event(received: Sequence[Received]) -> None:
    """Every event (call, seq) arrived under one ``webhook-id`` with one body,
    however often: a receiver deduplicates redeliveries by the id."""
    ids: dict[tuple[str, int], set[str]] = {}
    bodies: dict[str, set[bytes]] = {}
    for request in received:
        ids.setdefault((request.session_id, request.seq), set()).add(request.webhook_id)
        bodies.setdefault(request.webhook_id, set()).add(request.body)
    assert {event: found for event, found in ids.items() if len(found) > 1} == {}
    assert {id_: found for id_, found in bodies.items() if len(found) > 1} == {}


def event_position(webhook_id: str, subscription_id: str) -> tuple[int, StreamId]:
    """The shard and the log entry a ``webhook-id`` names (``msg_<sub>_<shard>-<entry>``)."""
    position = webhook_id.removeprefix(f"msg_{subscription_id}_")
    shard, _, entry_id = position.partition("-")
    return int(shard), parse_stream_id(entry_id)


def stored_cursors(client: redis.Redis, keys: Keyspace, subscription_id: str,
                   shards: int) -> list[StreamId]:
    """Each shard's stored cursor ((0, 0) where none is stored yet)."""
    values = [client.get(keys.webhook_cursor(shard, subscription_id)) for shard in range(shards)]
    return [parse_stream_id(v) if v is not None else (0, 0) for v in values]  # type: ignore[arg-type]


def cursors_past(client: redis.Redis, keys: Keyspace, subscription_id: str, shards: int,
                 delivered: Sequence[Received]) -> list[StreamId] | None:
    """The stored cursors, once they have every event in ``delivered`` behind
    them (the holder stores its cursor a few times a second); None until then."""
    cursors = stored_cursors(client, keys, subscription_id, shards)
    for request in delivered:
        shard, position = event_position(request.webhook_id, subscription_id)
        if position > cursors[shard]:
            return None
    return cursors


def assert_duplicates_only_above(received: Sequence[Received], subscription_id: str,
                                 cursors: Sequence[StreamId]) -> list[Received]:
    """Every redelivery is of an event above its shard's cursor as stored before
    the fault (what was in flight or not yet recorded done); they are returned."""
    again = duplicates(received)
    below = []
    for request in again:
        shard, position = event_position(request.webhook_id, subscription_id)
        if position <= cursors[shard]:
            below.append((request.session_id, request.seq, shard, position))
    assert below == [], f"redelivered though recorded done (cursors {list(cursors)})"
    return again


def records(client: redis.Redis, key: str, kind: type[msgspec.Struct]) -> list[object]:
    """The journal's records (deliveries, dead letters) in one stream."""
    return [msgspec.json.decode(fields[RECORD_FIELD], type=kind)
            for _, fields in client.xrange(key)]


# -- events that keep flowing --------------------------------------------------------


class Flow:
    """Events being committed in the background (see ``publishing``)."""

    def __init__(self) -> None:
        self.committed: list[tuple[float, ev.Event]] = []  # (monotonic time, event)
        self.task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Commit nothing more (the event being committed still is)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def committed_at(self, seq: int, session_id: str) -> float:
        return next(at for at, event in self.committed
                    if event.seq == seq and event.session_id == session_id)


@asynccontextmanager
async def publishing(publisher: CallPublisher, events: Iterable[ev.Event],
                     pace_s: float = 0.01) -> AsyncIterator[Flow]:
    """Commit ``events`` one by one, ``pace_s`` apart, in the background, until
    they run out or the flow is stopped (at the latest when the block ends):
    events that keep flowing while a test does something to the forwarders."""
    flow = Flow()

    async def run() -> None:
        for event in events:
            if flow.stopping:
                return
            await publisher.commit(event)
            flow.committed.append((time.monotonic(), event))
            await asyncio.sleep(pace_s)

    flow.task = asyncio.create_task(run())
    try:
        yield flow
    finally:
        flow.stop()
        await asyncio.wait_for(flow.task, 30)


# -- forwarders ----------------------------------------------------------------------


@asynccontextmanager
async def forwarding(aredis: aioredis.Redis, settings: Settings,
                     **options: object) -> AsyncIterator[Forwarder]:
    """A forwarder in this process (fast refresh and retries unless ``options``
    say otherwise), stopped (cursors stored, leases released) when the block ends."""
    options = {"refresh_s": 0.2, "retry_base_s": 0.05, "retry_cap_s": 0.2, **options}
    # The receivers listen on 127.0.0.1: the forwarder refuses to connect there otherwise.
    settings = msgspec.structs.replace(settings, webhook_allow_private=True)
    forwarder = Forwarder(aredis, settings, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(forwarder.run())
    try:
        yield forwarder
    finally:
        forwarder.stop()
        await asyncio.wait_for(task, 10)


def forward_process(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """``callhub forward *args`` with ``env``; its output (stdout and stderr) in a log
    file. The receivers listen on 127.0.0.1, so private destinations are allowed."""
    env = {**env, "CALLHUB_WEBHOOK_ALLOW_PRIVATE": "1"}
    log = tempfile.mkstemp(prefix="callhub-forward-", suffix=".log")[1]
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "callhub.cli", "forward", *args],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    return process, log


def holder_of(log: str) -> str:
    """The holder id a ``callhub forward`` announced in its log."""
    text = Path(log).read_text(errors="replace")
    marker = " as "
    line = next(line for line in text.splitlines() if "delivering webhooks from" in line)
    return line.rsplit(marker, 1)[1].strip()


def forwarder_started(log: str) -> bool:
    return "delivering webhooks from" in Path(log).read_text(errors="replace")
