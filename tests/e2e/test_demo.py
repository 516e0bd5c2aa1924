"""``callhub demo``: one process, no external server, live calls at once; the
spec's curl examples work against it, verbatim but for the port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from tests.support.polling import wait_until
from tests.support.processes import free_port, start_demo, stop_process
from tests.support.sse import parse_frame

SPEC_STREAMS = (  # the spec's SSE curl examples (the session one gets a real id)
    "/v1/calls/events?event_types=call_started,speech_final,call_terminated",
    "/v1/calls/events?dialog_name=helpdesk&include_history=true",
)


def curl(url: str, *options: str) -> bytes:
    result = subprocess.run(["curl", "-sS", *options, url], capture_output=True, timeout=30)
    # 28: --max-time reached, which is how a test ends an endless stream.
    assert result.returncode in (0, 28), result.stderr
    return result.stdout


def frames(raw: bytes) -> list[tuple[str, dict[str, object]]]:
    """(event type, data) of each event frame in a stream's bytes."""
    found = []
    for block in raw.split(b"\n\n"):
        frame = parse_frame(block)
        if frame.event and frame.data:
            found.append((frame.event, json.loads(frame.data)))
    return found


def test_the_demo_serves_live_calls_at_once_and_the_spec_curl_examples() -> None:
    started = time.monotonic()
    demo = start_demo("--speed", "4", "--rate", "3", "--seed", "7")
    try:
        first_call_s = time.monotonic() - started
        base = demo.url.replace("127.0.0.1", "localhost")
        print(f"demo: first live call after {first_call_s:.1f} s")
        assert "dashboard      " + demo.url + "/\n" in demo.output()
        assert "<title>" in curl(f"{base}/").decode()

        page = json.loads(curl(f"{base}/v1/calls?page_size=50"))
        assert page["total_count"] >= 1 and page["calls"]
        call = page["calls"][0]
        assert set(call) >= {"session_id", "caller_id", "called_number", "dialog_name",
                             "current_state", "start_time", "duration_seconds", "status",
                             "variables"}
        helpdesk = json.loads(curl(f"{base}/v1/calls?dialog_name=helpdesk&page_size=25"))
        assert all(c["dialog_name"] == "helpdesk" for c in helpdesk["calls"])
        one = json.loads(curl(f"{base}/v1/calls/{call['session_id']}"))
        assert one["session_id"] == call["session_id"]

        typed = frames(curl(base + SPEC_STREAMS[0], "-N", "--max-time", "6"))
        assert typed, "no event in 6 s on the spec's first stream example"
        assert {t for t, _ in typed} <= {"call_started", "speech_final", "call_terminated"}
        assert all(data["type"] == t for t, data in typed)

        history = frames(curl(base + SPEC_STREAMS[1], "-N", "--max-time", "3"))
        assert history and all(
            data.get("dialog_name", "helpdesk") == "helpdesk" for _, data in history
            if data["type"] == "call_started")

        session = frames(curl(f"{base}/v1/calls/events?session_id={call['session_id']}"
                              "&include_history=true", "-N", "--max-time", "3"))
        assert session and {d["session_id"] for _, d in session} == {call["session_id"]}
        seqs = [int(str(d["seq"])) for _, d in session]
        assert seqs == list(range(1, len(seqs) + 1))  # every event of the call, in order

        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(timeout=15) == 0
        assert "callhub demo: stopped." in demo.output()
        assert "Traceback" not in demo.output()
    finally:
        demo.stop()


def test_the_demo_uses_a_given_redis(redis_url: str, sync_redis: redis.Redis) -> None:
    demo = start_demo("--speed", "8", "--rate", "4", "--redis-url", redis_url)
    try:
        assert redis_url.split("//")[1].split("/")[0] in demo.output()
        wait_until(lambda: sync_redis.xlen("callhub:{0}:log") > 10, timeout=10,
                 what="the demo's events in the given redis-server")
        page = httpx.get(f"{demo.url}/v1/calls", timeout=5).json()
        stored = sync_redis.zcard("callhub:{0}:active")
        assert abs(page["total_count"] - stored) <= 5  # calls keep starting and ending
    finally:
        demo.stop()


def test_a_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "callhub.cli", "demo", "--port", str(port)],
            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_tail_command_the_demo_prints_works_in_a_new_shell(tmp_path: Path) -> None:
    """A second shell, without the virtualenv on its PATH, types what the demo
    printed (either form) and sees events."""
    demo = start_demo("--speed", "4", "--rate", "3")
    try:
        printed = demo.output()
        command = printed.split("in a terminal", 1)[1].split("\n", 1)[0].strip()
        assert command.endswith(f"callhub tail --url {demo.url}")
        activate = printed.split("(or `", 1)[1].split("`", 1)[0]
        assert activate.startswith(". ") and activate.endswith("/bin/activate")
        new_shell = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
        # exec: the PID stopped is the tail itself, not a shell that would leave it running
        for n, line in enumerate([f"exec {command}",
                                  f"{activate} && exec callhub tail --url {demo.url}"]):
            out = tmp_path / f"tail-{n}.jsonl"
            with out.open("wb") as sink:
                shell = subprocess.Popen(["bash", "--norc", "--noprofile", "-c",
                                          f"{line} --json"],
                                         stdout=sink, stderr=subprocess.PIPE, env=new_shell)
            try:
                wait_until(lambda out=out: out.read_bytes().count(b"\n") >= 2, timeout=20,
                           what=f"events from `{line}` in a new shell")
                assert json.loads(out.read_bytes().splitlines()[0])["session_id"]
            finally:
                stop_process(shell)  # type: ignore[arg-type]
    finally:
        demo.stop()
