"""``callhub publish`` as a user runs it: a real process against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from callhub.keyspace import Keyspace
from tests.support.paths import DATA
from tests.support.processes import free_port
from tests.support.redis_snapshot import snapshot

KEYS = Keyspace()


def publish(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callhub.cli", "publish", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def test_the_spec_examples_create_the_designs_keys_and_a_second_run_adds_nothing(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    lines = (DATA / "spec_events.jsonl").read_bytes().splitlines(keepends=True)
    # The first two events: the call is still active, so its indexes exist.
    first = publish(callhub_env, "--redis-url", redis_url, "-", stdin=b"".join(lines[:2]))
    assert first.returncode == 0, first.stderr
    assert "2 committed" in first.stdout
    assert set(sync_redis.keys("*")) == {
        b"callhub:{0}:log",
        b"callhub:{0}:call:call-abc-123",
        b"callhub:{0}:call:call-abc-123:events",
        b"callhub:{0}:active",
        b"callhub:{0}:active:helpdesk",
        b"callhub:{0}:leases",
    }
    whole = publish(callhub_env, "--redis-url", redis_url, str(DATA / "spec_events.jsonl"))
    assert whole.returncode == 0, whole.stderr
    assert "1 committed, 2 already stored, 0 failed" in whole.stdout
    log = sync_redis.xrange(KEYS.log(0))
    assert log == sync_redis.xrange(KEYS.call_events("call-abc-123"))
    assert len(log) == 3

    before = snapshot(sync_redis)
    again = publish(callhub_env, "--redis-url", redis_url, str(DATA / "spec_events.jsonl"))
    assert again.returncode == 0
    assert "0 committed, 3 already stored, 0 failed" in again.stdout
    assert snapshot(sync_redis) == before


def test_the_environment_names_the_server(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str]
) -> None:
    env = {**callhub_env, "CALLHUB_REDIS_URL": redis_url, "CALLHUB_PREFIX": "vt"}
    done = publish(env, str(DATA / "spec_events.jsonl"))
    assert done.returncode == 0, done.stderr
    assert sync_redis.exists("vt:{0}:log")


def test_each_bad_line_gets_its_own_message_and_the_good_lines_commit(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str], tmp_path: Path
) -> None:
    def line(**fields: object) -> str:
        return json.dumps(fields)

    started = line(type="call_started", session_id="c-1", caller_id="+1", called_number="+2",
                   dialog_name="helpdesk")
    file = tmp_path / "events.jsonl"
    file.write_text("\n".join([
        started,                                                                   # 1 ok
        '{"type": "dtmf_received", "session_id": "c-1", "digit": "5"',             # 2 bad JSON
        line(type="call_exploded", session_id="c-1"),                             # 3 unknown
        line(type="dtmf_received", session_id="c-1", digit="Z", duration_ms=1),   # 4 digit
        line(type="dtmf_received", session_id="c{1}", digit="1", duration_ms=1),  # 5 braces
        line(type="dtmf_received", session_id="never", digit="1", duration_ms=1), # 6 no start
        line(type="dtmf_received", session_id="c-1", digit="1", duration_ms=1),   # 7 ok
    ]) + "\n")
    done = publish(callhub_env, "--redis-url", redis_url, str(file))
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert [e.split(":")[0] for e in errors] == [f"line {n}" for n in (2, 3, 4, 5, 6)]
    assert "invalid JSON" in errors[0]
    assert "unknown type 'call_exploded'" in errors[1]
    assert "'Z'" in errors[2] and "$.digit" in errors[2]
    assert "contains '{'" in errors[3]
    assert "unknown_call" in errors[4] and "never" in errors[4]
    assert "7 events: 2 committed, 0 already stored, 5 failed" in done.stdout
    # Only the good lines are stored; the bad ones touched nothing.
    assert set(sync_redis.keys("*")) == {
        b"callhub:{0}:log", b"callhub:{0}:call:c-1", b"callhub:{0}:call:c-1:events",
        b"callhub:{0}:active", b"callhub:{0}:active:helpdesk", b"callhub:{0}:leases",
    }
    seqs = [fields[b"seq"] for _, fields in sync_redis.xrange(KEYS.call_events("c-1"))]
    # Line 7 is the fourth line naming c-1 (line 2 names no session it could read).
    assert seqs == [b"1", b"4"]


def test_a_bad_setting_fails_at_start_naming_the_variable(callhub_env: dict[str, str]) -> None:
    done = publish({**callhub_env, "CALLHUB_SHARDS": "lots"}, str(DATA / "spec_events.jsonl"))
    assert done.returncode == 2
    assert "CALLHUB_SHARDS" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_file_is_a_message_not_a_traceback(callhub_env: dict[str, str]) -> None:
    done = publish(callhub_env, "/nonexistent/events.jsonl")
    assert done.returncode == 2
    assert "cannot read /nonexistent/events.jsonl" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_redis_is_a_message_not_a_traceback(callhub_env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = publish(callhub_env, "--redis-url", url, "--retry-for", "0.5",
                   str(DATA / "spec_events.jsonl"))
    assert done.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_large_file_shows_progress(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "many.jsonl"
    with file.open("w") as out:
        for n in range(3000):
            out.write(json.dumps({"type": "call_started", "session_id": f"c-{n}",
                                  "caller_id": "+1", "called_number": "+2",
                                  "dialog_name": "helpdesk"}) + "\n")
    done = publish(callhub_env, "--redis-url", redis_url, "--progress-interval", "0", str(file))
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("publishing:")]
    assert len(progress) >= 2
    assert "events/s" in progress[-1]
    assert sync_redis.zcard(KEYS.active(0)) == 3000


def test_a_line_nested_too_deeply_is_a_line_error_and_the_valid_lines_commit(
    redis_url: str, sync_redis: redis.Redis, callhub_env: dict[str, str], tmp_path: Path
) -> None:
    started = json.dumps({"type": "call_started", "session_id": "c-1", "caller_id": "+1",
                          "called_number": "+2", "dialog_name": "helpdesk"})
    deep = '{"type": "dtmf_received", "session_id": "c-1", "x": ' + "[" * 1000 + "]" * 1000 + "}"
    file = tmp_path / "events.jsonl"
    file.write_text(f"{started}\n{deep}\n")
    done = publish(callhub_env, "--redis-url", redis_url, str(file))
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["line 2: invalid JSON: nested too deeply"]
    assert "Traceback" not in done.stderr
    assert sync_redis.xlen(KEYS.call_events("c-1")) == 1
