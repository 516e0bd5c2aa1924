"""``callhub export`` of ended calls (the records index): through the real nginx in
front of two replicas, a dialog-scoped key's export holds exactly its dialog's
ended calls, each with its summary, newest first, within the time bounds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis

from callhub.settings import Settings
from hub.api.auth import hash_key
from tests.support.conversations import Conversation
from tests.support.export_cli import export, lines
from tests.support.nginx import start_nginx
from tests.support.processes import free_port, start_hub
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher

# Recent: the indexes keep ended calls for the call retention (an hour).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)


def ended_call(session_id: str, dialog: str, minute: int) -> Conversation:
    """A call that started ``minute`` minutes after T0 and lasted 10 s."""
    call = Conversation(session_id, start=T0 + timedelta(minutes=minute), dialog=dialog)
    call.agent(100, "Hello, how can I help?", played_ms=900)
    call.caller(2500, "my bill is wrong", 900)
    call.end(10_000, "caller_hangup")
    return call


async def test_export_of_ended_calls_through_nginx_has_exactly_the_keys_calls(
    redis_url: str, aredis: aioredis.Redis, settings: Settings, tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f"""
[[keys]]
name = "helpdesk"
sha256 = "{hash_key('helpdesk-key')}"
dialogs = ["helpdesk"]
""")
    calls = [ended_call(f"{'h' if n % 3 else 'b'}-{n:02}", "helpdesk" if n % 3 else "billing",
                        n) for n in range(24)]
    publisher = CallPublisher(aredis, settings)
    for call in calls:
        await publisher.commit_many(call.events)
    await publisher.commit_many([call_started("still-talking", dialog="helpdesk")])
    ours = [c for c in calls if c.dialog == "helpdesk"]
    env = {"CALLHUB_API_KEYS_FILE": str(keys)}
    hubs = [await asyncio.to_thread(start_hub, redis_url, env=env, log_dir=tmp_path,
                                    port=free_port()) for _ in range(2)]
    try:
        nginx = await asyncio.to_thread(start_nginx, tmp_path / "nginx",
                                        [h.url.removeprefix("http://") for h in hubs])
        key = {"CALLHUB_API_KEY": "helpdesk-key"}
        try:
            status, out, err = await export("--url", nginx.url, "--status", "terminated",
                                            "--page-size", "4", env=key)
            assert status == 0, err
            exported = lines(out)
            assert [line["session_id"] for line in exported] == [
                c.session_id for c in reversed(ours)]  # newest first, exactly the key's
            assert all(line["status"] == "terminated" and line["reason"] == "caller_hangup"
                       and line["summary"]["turns"]["caller"] == 1 for line in exported)
            bounded = T0 + timedelta(minutes=12)
            status, out, err = await export(
                "--url", nginx.url, "--status", "terminated", "--with-transcript",
                "--ended-after", bounded.isoformat().replace("+00:00", "Z"), env=key)
            assert status == 0, err
            late = lines(out)
            assert [line["session_id"] for line in late] == [
                c.session_id for c in reversed(ours) if c.start >= bounded - timedelta(
                    seconds=10)]
            assert all(line["transcript"]["turns"][1]["text"] == "my bill is wrong"
                       for line in late)
            status, out, err = await export("--url", nginx.url, "--status", "all", env=key)
            assert status == 0, err
            assert {line["session_id"] for line in lines(out)} == {
                "still-talking", *(c.session_id for c in ours)}
        finally:
            nginx.stop()
    finally:
        for hub in hubs:
            hub.stop()
