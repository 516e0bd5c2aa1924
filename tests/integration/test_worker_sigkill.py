"""A worker killed with SIGKILL leaves no call active beyond its lease (I7):
another worker process's reaper ends each of its calls exactly once, with
reason ``error``. Real processes, real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import redis

from callhub.keyspace import Keyspace
from tests.support.polling import wait_until
from tests.support.processes import stop_process

KEYS = Keyspace()
LEASE_S = 1.0


def worker(redis_url: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "callhub.cli", "worker", "--redis-url", redis_url, "--simulate",
         *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )


def ends(client: redis.Redis, session_id: str) -> list[dict[str, object]]:
    return [json.loads(fields[b"data"]) for _, fields in client.xrange(KEYS.call_events(session_id))
            if fields[b"type"] == b"call_terminated"]


def test_a_killed_workers_calls_are_reaped_by_another_worker(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    env = {**callhub_env, "CALLHUB_LEASE": f"{int(LEASE_S * 1000)}ms"}
    # Calls at real speed last tens of seconds: plenty stay active at the kill.
    doomed = worker(redis_url, env, "--rate", "20", "--speed", "1", "--seed", "1")
    try:
        wait_until(lambda: sync_redis.zcard(KEYS.active(0)) >= 8, timeout=15,
                 what="the first worker to hold 8 active calls")
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    orphans = {sid.decode() for sid in sync_redis.zrange(KEYS.active(0), 0, -1)}
    killed_at = time.monotonic()

    survivor = worker(redis_url, env, "--rate", "0.5", "--speed", "1", "--seed", "2")
    try:
        still_active = lambda: orphans & {  # noqa: E731
            sid.decode() for sid in sync_redis.zrange(KEYS.active(0), 0, -1)}
        wait_until(lambda: not still_active(), timeout=15,
                 what="the second worker's reaper to end the killed worker's calls")
        reaped_after_s = time.monotonic() - killed_at
    finally:
        stop_process(survivor)

    for sid in orphans:
        (end,) = ends(sync_redis, sid)  # exactly one end per call
        assert end["reason"] == "error", (sid, end)
        assert sync_redis.hget(KEYS.call(sid), "status") == b"terminated"
        assert sync_redis.zscore(KEYS.leases(0), sid) is None
    # A lease, plus at most one reaper sweep (half a lease), plus start-up slack.
    print(f"{len(orphans)} orphaned calls reaped {reaped_after_s:.1f} s after the SIGKILL "
          f"(lease {LEASE_S:g} s)")
