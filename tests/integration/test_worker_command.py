"""``callhub worker --simulate`` against a real redis-server: as a process (N calls,
every event type, SIGTERM, bad arguments) and in process beside the hub (the
statuses hold and transfer give a call, seen through Get Call and List Calls)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from callhub.cli.worker import lease_companions
from callhub.connections import RedisClient
from callhub.cursor import Cursor, format_stream_id
from callhub.events import EVENT_TYPES
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from tests.support.paths import DATA
from tests.support.polling import wait_until
from tests.support.processes import free_port, stop_process
from tests.support.redis_servers import async_client
from workers.dialog.spec import load_dialog
from workers.simulator.bundled_dialogs import bundled_dialog_paths
from workers.simulator.worker import SimulatedWorker

KEYS = Keyspace()
BUNDLED = [str(path) for path in bundled_dialog_paths()]


def worker_command(redis_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "callhub.cli", "worker", "--redis-url", redis_url, "--simulate",
            *args]


def stored_calls(client: redis.Redis) -> dict[str, list[dict[str, object]]]:
    calls: dict[str, list[dict[str, object]]] = defaultdict(list)
    for _, fields in client.xrange(KEYS.log(0)):
        calls[fields[b"session_id"].decode()].append(json.loads(fields[b"data"]))
    return calls


def test_n_calls_make_n_starts_n_ends_and_every_event_type(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    done = subprocess.run(
        worker_command(redis_url, "--calls", "60", "--rate", "2000", "--speed", "1000",
                       "--seed", "7", "--dialog", *BUNDLED),
        capture_output=True, text=True, env=callhub_env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "60 calls" in done.stdout and "0 errors" in done.stdout
    calls = stored_calls(sync_redis)
    types = Counter(e["type"] for events in calls.values() for e in events)
    assert types["call_started"] == 60 and types["call_terminated"] == 60
    for events in calls.values():
        assert [e["type"] for e in events].count("call_terminated") == 1
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert set(types) == set(EVENT_TYPES), f"missing: {set(EVENT_TYPES) - set(types)}"
    assert {e["dialog_name"] for es in calls.values() for e in es
            if e["type"] == "call_started"} == {"helpdesk", "billing_menu"}
    assert sync_redis.zcard(KEYS.active(0)) == 0
    assert sync_redis.zcard(KEYS.leases(0)) == 0


def test_sigterm_ends_every_active_call_cleanly(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            worker_command(redis_url, "--rate", "40", "--speed", "4", "--seed", "3"),
            stdout=out, stderr=subprocess.STDOUT, env=callhub_env,
        )
    try:
        wait_until(lambda: sync_redis.zcard(KEYS.active(0)) >= 5, timeout=30,
                 what="five active calls")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        stop_process(process)
    calls = stored_calls(sync_redis)
    ends = [e for events in calls.values() for e in events if e["type"] == "call_terminated"]
    assert len(ends) == len(calls) >= 5
    assert all([e["type"] for e in events].count("call_terminated") == 1
               for events in calls.values())
    assert "system_hangup" in {e["reason"] for e in ends}
    assert sync_redis.zcard(KEYS.active(0)) == 0
    assert f"{len(calls)} calls" in log.read_text()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "0"], "--rate"),
        (["--calls", "-3"], "--calls"),
        (["--speed", "fast"], "--speed"),
        (["--hook-url", "ftp://example"], "--hook-url must be an http(s) URL"),
        (["--dialog", "/nonexistent/dialog.toml"], "/nonexistent/dialog.toml:1: cannot read"),
        (["--dialog", *BUNDLED, BUNDLED[0]], "is taken by"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], says: str, callhub_env: dict[str, str]
) -> None:
    done = subprocess.run(worker_command("redis://127.0.0.1:1/0", *args), capture_output=True,
                          text=True, env=callhub_env, timeout=60, check=False)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_redis_is_named_and_exits_1(callhub_env: dict[str, str]) -> None:
    done = subprocess.run(worker_command(f"redis://127.0.0.1:{free_port()}/0", "--calls", "1"),
                          capture_output=True, text=True, env=callhub_env, timeout=60,
                          check=False)
    assert done.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_simulate_the_worker_says_what_is_missing(callhub_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "callhub.cli", "worker"], capture_output=True,
                          text=True, env=callhub_env, timeout=60, check=False)
    assert done.returncode == 2 and "--simulate" in done.stderr


# The status each action gives a call (the commit script sets it in the same
# commit as the event): the session stream is the exact record of its changes.
STATUS_AFTER_ACTION = {"hold": "on_hold", "resume": "active", "transfer": "transferring"}


def statuses(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[str]:
    """The call's status after each entry of its session stream, oldest first."""
    status, after = "", []
    for _, fields in entries:
        if fields[b"type"] == b"call_started":
            status = "active"
        elif fields[b"type"] == b"action_executed":
            action = json.loads(fields[b"data"])["action"]
            status = STATUS_AFTER_ACTION.get(action, status)
        elif fields[b"type"] == b"call_terminated":
            status = "terminated"
        after.append(status)
    return after


async def test_hold_and_transfer_show_in_get_call_and_list_calls(
    aredis: aioredis.Redis, settings: Settings, api: httpx.AsyncClient,
    sync_redis: redis.Redis,
) -> None:
    dialog = load_dialog(DATA / "dialogs" / "hold_and_transfer.toml")
    worker = SimulatedWorker(aredis, settings, [dialog], rate=1000, calls=3, speed=10, seed=1)
    keys = settings.keyspace
    seen: set[str] = set()
    listed: set[str] = set()
    sessions: set[str] = set()

    async def status_at(session_id: str, cursor: str) -> str:
        """The status the session stream gives the call at a snapshot's position."""
        position = Cursor.decode(cursor, keys.shards).positions[keys.shard_of(session_id)]
        assert position is not None
        entries = await aredis.xrange(keys.call_events(session_id), "-",
                                      format_stream_id(position))
        return statuses(entries)[-1]

    async def snapshot(session_id: str) -> None:
        """Get Call and List Calls now: each call's status is the one its stream has
        at the snapshot's position (the call's cursor), whatever moved since."""
        call = (await api.get(f"/v1/calls/{session_id}")).json()
        assert call["status"] == await status_at(session_id, call["cursor"]), call
        seen.add(call["status"])
        page = (await api.get("/v1/calls", params={"page_size": "100"})).json()
        for listed_call in page["calls"]:
            assert listed_call["status"] == await status_at(
                listed_call["session_id"], listed_call["cursor"]), listed_call
            listed.add(listed_call["status"])

    async def follow(reader: RedisClient) -> None:
        """Read the shard log as it grows; snapshot at every change of status."""
        last: bytes | str = "0"
        ended = 0
        while ended < 3:
            for _, entries in await reader.xread({keys.log(0): last}, block=1000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    session_id = fields[b"session_id"].decode()
                    sessions.add(session_id)
                    if fields[b"type"] in (b"action_executed", b"call_terminated"):
                        await snapshot(session_id)
                    ended += fields[b"type"] == b"call_terminated"
            if running.done():
                running.result()  # the worker's error, if it failed

    running = asyncio.create_task(worker.run())
    reader = async_client(settings)
    try:
        await asyncio.wait_for(follow(reader), 30)
    finally:
        await reader.aclose()
    stats = await running
    assert stats.reasons == {"transfer": 3}
    assert {"on_hold", "transferring"} <= seen, seen
    assert {"on_hold", "transferring"} <= listed, listed
    assert len(sessions) == 3
    for session_id in sessions:
        changes = [s for s, _ in itertools.groupby(
            statuses(sync_redis.xrange(keys.call_events(session_id))))]
        assert changes == ["active", "on_hold", "active", "transferring", "terminated"]
        call = (await api.get(f"/v1/calls/{session_id}")).json()
        assert (call["status"], call["reason"]) == ("terminated", "transfer")
        assert call["final_state"] == "greeting"
        assert sync_redis.hget(KEYS.call(session_id), "status") == b"terminated"


async def test_leases_outlive_a_hold_longer_than_a_lease_and_the_reaper_leaves_them(
    aredis: aioredis.Redis, redis_url: str, sync_redis: redis.Redis,
) -> None:
    # A 200 ms lease; each call is silent (on hold, then transferring) for ~750 ms.
    settings = Settings(redis_url=redis_url, lease_ms=200)
    dialog = load_dialog(DATA / "dialogs" / "hold_and_transfer.toml")
    keeper, companions = lease_companions(aredis, settings)
    worker = SimulatedWorker(aredis, settings, [dialog], rate=1000, calls=4, speed=16, seed=1,
                             leases=keeper, companions=companions)
    stats = await asyncio.wait_for(worker.run(), 30)
    assert stats.reasons == {"transfer": 4}, stats
    assert keeper.held == frozenset()
    assert sync_redis.zcard(KEYS.leases(0)) == 0
