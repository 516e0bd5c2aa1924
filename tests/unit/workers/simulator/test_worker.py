"""SimulatedWorker on fakeredis (the commit script runs in its Lua): calls start
and end, a seed repeats a run, stop() ends calls cleanly, leases and
companions are told. The real redis-server runs are in tests/integration."""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict

import fakeredis
import pytest

from callhub.events import EVENT_TYPES
from callhub.settings import Settings
from tests.support.polling import async_wait_until
from workers.simulator.worker import SimulatedWorker

SETTINGS = Settings()


@pytest.fixture
def fake() -> fakeredis.aioredis.FakeRedis:
    return fakeredis.aioredis.FakeRedis()


async def calls_in(redis: fakeredis.aioredis.FakeRedis) -> dict[str, list[dict[str, object]]]:
    """Every stored event, by session id, in commit order."""
    calls: dict[str, list[dict[str, object]]] = defaultdict(list)
    for _, fields in await redis.xrange(SETTINGS.keyspace.log(0)):
        calls[fields[b"session_id"].decode()].append(json.loads(fields[b"data"]))
    return calls


async def test_n_calls_start_and_end_once_each(fake: fakeredis.aioredis.FakeRedis) -> None:
    worker = SimulatedWorker(fake, SETTINGS, rate=10_000, calls=30, speed=math.inf, seed=11)
    stats = await asyncio.wait_for(worker.run(), 60)
    calls = await calls_in(fake)
    assert len(calls) == 30
    for events in calls.values():
        types = [e["type"] for e in events]
        assert types[0] == "call_started" and types.count("call_terminated") == 1
        assert types[-1] == "call_terminated"
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (stats.started, stats.done, stats.active, stats.errors) == (30, 30, 0, 0)
    assert sum(stats.reasons.values()) == 30
    assert stats.events == sum(len(e) for e in calls.values())
    assert set(stats.event_types) <= set(EVENT_TYPES)
    assert await fake.zcard(SETTINGS.keyspace.active(0)) == 0
    assert worker.held_calls == frozenset()


async def test_the_same_seed_makes_the_same_calls(fake: fakeredis.aioredis.FakeRedis) -> None:
    def shape(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(e["type"], e.get("transcript"), e.get("digit"), e.get("to_state"),
                 e.get("reason"), e.get("caller_id")) for e in events]

    runs = []
    for prefix in ("first", "second"):
        worker = SimulatedWorker(fake, SETTINGS, rate=10_000, calls=12, speed=math.inf,
                                 seed=5, session_prefix=prefix)
        await asyncio.wait_for(worker.run(), 60)
        calls = await calls_in(fake)
        runs.append({sid.removeprefix(prefix): shape(events)
                     for sid, events in calls.items() if sid.startswith(prefix)})
    assert len(runs[0]) == 12
    assert runs[0] == runs[1]


async def test_stop_ends_the_active_calls_with_system_hangup(
    fake: fakeredis.aioredis.FakeRedis,
) -> None:
    worker = SimulatedWorker(fake, SETTINGS, rate=200, speed=2.0, seed=3)
    task = asyncio.create_task(worker.run())
    await async_wait_until(lambda: worker.stats.active >= 5, what="five active calls")
    worker.stop()
    stats = await asyncio.wait_for(task, 15)
    assert stats.active == 0 and stats.errors == 0
    assert stats.reasons.get("system_hangup", 0) >= 1
    calls = await calls_in(fake)
    assert all([e["type"] for e in ev].count("call_terminated") == 1 for ev in calls.values())
    assert len(calls) == stats.done
    assert await fake.zcard(SETTINGS.keyspace.active(0)) == 0


class RecordingLeases:
    def __init__(self) -> None:
        self.held: set[str] = set()
        self.ever: set[str] = set()

    def hold(self, session_id: str) -> None:
        self.held.add(session_id)
        self.ever.add(session_id)

    def release(self, session_id: str) -> None:
        self.held.discard(session_id)


class Companion:
    def __init__(self) -> None:
        self.running = False
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        self.running = True
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


async def test_leases_are_held_while_calls_run_and_companions_run_beside_them(
    fake: fakeredis.aioredis.FakeRedis,
) -> None:
    leases, companion = RecordingLeases(), Companion()
    worker = SimulatedWorker(fake, SETTINGS, rate=10_000, calls=10, speed=math.inf, seed=2,
                             leases=leases, companions=[companion])
    await asyncio.wait_for(worker.run(), 60)
    assert len(leases.ever) == 10 and leases.held == set()
    assert companion.running and companion.stopped.is_set()


def test_bad_arguments_are_refused(fake: fakeredis.aioredis.FakeRedis) -> None:
    with pytest.raises(ValueError, match="rate"):
        SimulatedWorker(fake, SETTINGS, rate=0)
    with pytest.raises(ValueError, match="dialog"):
        SimulatedWorker(fake, SETTINGS, [])
