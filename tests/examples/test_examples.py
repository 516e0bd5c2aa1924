"""The examples in examples/, run as a user runs them (``python examples/X.py``)
against a real hub (in process, on a loopback port) and a real Redis, with real
HTTP receivers. The transcript recorder is also SIGKILLed mid-stream and started
again: it goes on exactly after its last checkpoint."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from callhub import events as ev
from callhub.cursor import Cursor
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from tests.support.conversations import Conversation
from tests.support.hubs import LiveHub, serving
from tests.support.local_http import local_http_server
from tests.support.paths import ROOT
from tests.support.polling import async_wait_until
from workers.commit.publisher import CallPublisher

EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(EXAMPLES / name), *args], stdout=out,
                                stderr=subprocess.STDOUT, env=environment)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it (SIGKILL if it does not go)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def subscribed(live: LiveHub, count: int = 1) -> None:
    await async_wait_until(lambda: live.replica.dispatcher.count >= count, timeout=20,
                           what="the example to subscribe")


def speaking(session_id: str, dialog: str, lines: int) -> Conversation:
    call = Conversation(session_id, dialog=dialog)
    for n in range(lines):
        call.caller(1000 * (n + 1), f"line {n} of {session_id}", 500)
    return call


async def test_escalate_on_zero_posts_each_zero_in_helpdesk(
    aredis: aioredis.Redis, settings: Settings, tmp_path: Path,
) -> None:
    publisher = CallPublisher(aredis, settings)
    async with serving(settings) as live, local_http_server() as workflow:
        process = run_example("escalate_on_zero.py", "--url", live.url, "--workflow-url",
                              f"http://127.0.0.1:{workflow.port}/escalate",
                              log=tmp_path / "log")
        try:
            await subscribed(live)
            help_call, billing_call = Conversation("h-1"), Conversation("b-1", dialog="billing")
            help_call.press(1000, "5")
            help_call.press(2000, "0")
            billing_call.press(1000, "0")
            await publisher.commit_many(help_call.events + billing_call.events)
            await async_wait_until(lambda: workflow.requests, timeout=20,
                                   what="the escalation POST")
        finally:
            stop(process)
    assert len(workflow.requests) == 1, (tmp_path / "log").read_text()
    posted = json.loads(workflow.requests[0].body)
    assert posted["session_id"] == "h-1" and posted["caller_id"] == "+15551234567"
    assert workflow.requests[0].target == "/escalate"


async def test_error_alerts_post_the_transcript_of_a_call_that_failed(
    aredis: aioredis.Redis, settings: Settings, tmp_path: Path,
) -> None:
    publisher = CallPublisher(aredis, settings)
    async with serving(settings) as live, local_http_server() as receiver:
        process = run_example("error_alerts.py", "--url", live.url, "--webhook-url",
                              f"http://127.0.0.1:{receiver.port}/alerts", log=tmp_path / "log")
        try:
            await subscribed(live)
            failed, fine = Conversation("f-1"), Conversation("ok-1")
            failed.caller(1000, "my card was declined", 800)
            failed.end(2000, "error", "payment")
            fine.end(1000, "normal")
            await publisher.commit_many(failed.events + fine.events)
            await async_wait_until(lambda: receiver.requests, timeout=20, what="the alert")
        finally:
            stop(process)
    output = (tmp_path / "log").read_text()
    assert "ALERT call_failed f-1: ended in error in payment" in output
    assert "ok-1" not in output
    alert = json.loads(receiver.requests[0].body)
    assert alert["kind"] == "call_failed" and "my card was declined" in alert["transcript"]


def recorded(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(line["session_id"], line["seq"]) for line in map(json.loads,
                                                               path.read_text().splitlines())]


async def test_transcripts_to_jsonl_killed_and_restarted_goes_on_after_its_checkpoint(
    aredis: aioredis.Redis, settings: Settings, tmp_path: Path,
) -> None:
    publisher = CallPublisher(aredis, settings)
    calls = [speaking(f"t-{n}", "helpdesk" if n % 3 else "billing", 10) for n in range(12)]
    cursor_file = tmp_path / "helpdesk.cursor"
    first_out, second_out = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    args = ("--dialog", "helpdesk", "--cursor", str(cursor_file))
    async with serving(settings) as live:
        first = run_example("transcripts_to_jsonl.py", "--url", live.url, *args,
                            "--output", str(first_out), log=tmp_path / "log")
        try:
            await subscribed(live)

            async def publish() -> None:
                for call in calls:
                    await publisher.commit_many(call.events)
                    await asyncio.sleep(0)

            publishing = asyncio.create_task(publish())
            await async_wait_until(lambda: len(recorded(first_out)) >= 15, timeout=20,
                                   what="the recorder to write 15 lines")
            first.send_signal(signal.SIGKILL)  # mid-stream, at no particular moment
            first.wait(timeout=10)
            await publishing
        finally:
            stop(first)
        checkpoint = cursor_file.read_text().strip()
        second = run_example("transcripts_to_jsonl.py", "--url", live.url, *args,
                             "--output", str(second_out), log=tmp_path / "log")
        try:
            truth = await speech_finals_after(aredis, None)
            after = await speech_finals_after(aredis, checkpoint)
            await async_wait_until(lambda: len(recorded(second_out)) >= len(after),
                                   timeout=20, what="the restarted recorder to catch up")
        finally:
            stop(second)
    assert recorded(second_out) == after  # exactly the events after the checkpoint
    first_lines = recorded(first_out)
    before = truth[:len(truth) - len(after)]
    # Everything before the checkpoint was written; at most one more (written, not acked).
    assert first_lines[:len(before)] == before and len(first_lines) - len(before) <= 1
    assert len(truth) == 8 * 10  # helpdesk's calls, every line of each


async def speech_finals_after(aredis: aioredis.Redis,
                             cursor: str | None) -> list[tuple[str, int]]:
    """The helpdesk speech_finals in the shard log after ``cursor`` (the truth)."""
    keys = Keyspace()
    start = "-"
    if cursor:
        position = Cursor.decode(cursor, keys.shards).positions[0]
        if position is not None:
            start = f"({position[0]}-{position[1]}"
    entries = await aredis.xrange(keys.log(0), start, "+")
    found = []
    for _, fields in entries:
        event = ev.decode_event(fields[b"data"])
        if isinstance(event, ev.SpeechFinal) and fields[b"dialog"] == b"helpdesk":
            found.append((event.session_id, event.seq))
    return found


def test_the_examples_type_check_strictly(tmp_path: Path) -> None:
    from mypy import api as mypy_api

    out, err, status = mypy_api.run(["--strict", "--no-incremental", "--cache-dir",
                                     str(tmp_path), *map(str, sorted(EXAMPLES.glob("*.py")))])
    assert status == 0, out + err
