"""The README's examples run as a user runs them, against a real redis-server:
its CallPublisher snippet commits a call (and, run again, stores nothing twice),
and ``callhub publish examples/events.jsonl`` — the file the README shows line for
line — commits one call with every event type there is."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import redis

from callhub.events import EVENT_TYPES
from callhub.keyspace import Keyspace
from callhub.layout import (
    CALL_DIALOG_NAME,
    CALL_STATUS,
    ENTRY_DATA,
    STATUS_ACTIVE,
    STATUS_TERMINATED,
)
from tests.support.paths import ROOT
from tests.support.readme import code_blocks, section

KEYS = Keyspace()
EXAMPLE_EVENTS = ROOT / "examples" / "events.jsonl"


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          env=env, timeout=60, check=False, cwd=ROOT)


def test_the_publisher_snippet_commits_a_call_once(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    publisher, _ = code_blocks(section("Integrate with callhub"), "python")
    env = {**callhub_env, "CALLHUB_REDIS_URL": redis_url}
    first = run(env, "-c", publisher)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "committed"
    call = sync_redis.hgetall(KEYS.call("call-42"))
    assert call[CALL_STATUS] == STATUS_ACTIVE and call[CALL_DIALOG_NAME] == b"helpdesk", call
    assert sync_redis.zscore(KEYS.active(0), "call-42") is not None
    again = run(env, "-c", publisher)  # the same seq again: a retry
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "duplicate"
    assert sync_redis.xlen(KEYS.log(0)) == 1


def test_the_readme_shows_the_example_file_line_for_line() -> None:
    [shown] = code_blocks(section("Events"), "jsonl")
    assert shown == EXAMPLE_EVENTS.read_text(encoding="utf-8")


def test_the_example_file_publishes_every_event_type(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    published = run(callhub_env, "-m", "callhub.cli", "publish", "--redis-url", redis_url,
                    str(EXAMPLE_EVENTS))
    assert published.returncode == 0, published.stderr
    lines = EXAMPLE_EVENTS.read_text(encoding="utf-8").splitlines()
    assert f"{len(lines)} committed, 0 already stored, 0 failed" in published.stdout
    stored = [msgspec.json.decode(fields[ENTRY_DATA]) for _, fields in
              sync_redis.xrange(KEYS.log(0))]
    assert len(stored) == len(lines)
    assert {event["type"] for event in stored} == set(EVENT_TYPES)
    assert sync_redis.hget(KEYS.call("call-example-1"), CALL_STATUS) == STATUS_TERMINATED
