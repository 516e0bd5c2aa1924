"""``callhub export`` as a user runs it: a real process against a real hub (in process
on a loopback port, or two ``callhub serve`` replicas behind the real nginx)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from callhub.settings import Settings
from tests.support.conversations import Conversation
from tests.support.export_cli import export, lines
from tests.support.hubs import serving
from tests.support.keys import write_keys_file
from tests.support.nginx import start_nginx
from tests.support.processes import free_port, start_hub
from tests.support.strategies import call_started
from workers.commit.publisher import CallPublisher


def talking(session_id: str, dialog: str) -> Conversation:
    call = Conversation(session_id, dialog=dialog)
    call.agent(100, "Hello, how can I help?", played_ms=900)
    call.caller(2500, "my bill is wrong", 900)
    return call


async def test_every_call_one_line_with_its_summary_and_transcript_if_asked(
    aredis: aioredis.Redis, settings: Settings, tmp_path: Path,
) -> None:
    calls = [talking(f"call-{n}", "helpdesk") for n in range(7)]
    await CallPublisher(aredis, settings).commit_many([e for c in calls for e in c.events])
    async with serving(settings) as live:
        status, out, err = await export("--url", live.url, "--page-size", "3")
        assert status == 0, err
        exported = lines(out)
        assert sorted(line["session_id"] for line in exported) == [f"call-{n}" for n in range(7)]
        assert all(line["summary"]["turns"]["caller"] == 1 for line in exported)
        assert all("transcript" not in line for line in exported)
        assert "callhub export: 7 calls" in err
        target = tmp_path / "calls.jsonl"
        status, out, err = await export("--url", live.url, "--with-transcript",
                                        "--output", str(target))
        assert (status, out) == (0, b""), err
    with_transcripts = lines(target.read_bytes())
    assert len(with_transcripts) == 7
    assert with_transcripts[0]["transcript"]["turns"][1]["text"] == "my bill is wrong"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.jsonl"]  # no temporary left


async def test_a_scoped_key_through_nginx_exports_exactly_its_calls(
    redis_url: str, aredis: aioredis.Redis, settings: Settings, tmp_path: Path,
) -> None:
    keys = write_keys_file(tmp_path / "keys.toml")
    ours = [f"h-{n}" for n in range(9)]
    await CallPublisher(aredis, settings).commit_many(
        [call_started(sid, dialog="helpdesk") for sid in ours]
        + [call_started(f"b-{n}", dialog="billing") for n in range(6)])
    env = {"CALLHUB_API_KEYS_FILE": str(keys)}
    hubs = [await asyncio.to_thread(start_hub, redis_url, env=env, log_dir=tmp_path,
                                    port=free_port()) for _ in range(2)]
    try:
        nginx = await asyncio.to_thread(start_nginx, tmp_path / "nginx",
                                        [h.url.removeprefix("http://") for h in hubs])
        try:
            status, out, err = await export("--url", nginx.url, "--page-size", "2",
                                            env={"CALLHUB_API_KEY": "helpdesk-key"})
            assert status == 0, err
            assert sorted(line["session_id"] for line in lines(out)) == ours
            everything = await export("--url", nginx.url, "--api-key", "ops-key")
            assert len(lines(everything[1])) == 15
        finally:
            nginx.stop()
    finally:
        for hub in hubs:
            hub.stop()


@pytest.mark.parametrize(("args", "env", "words"), [
    ((), {}, "the hub needs an API key (401: an API key is required"),
    (("--api-key", "wrong"), {}, "the API key was refused (401: the API key is not valid)"),
    (("--dialog", "no spaces"), {"CALLHUB_API_KEY": "ops-key"},
     "the hub refused --dialog: dialog_name 'no spaces' is not valid"),
])
async def test_refusals_exit_2_with_the_hubs_words_and_leave_no_file(
    settings: Settings, tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
    words: str,
) -> None:
    keyed = Settings(redis_url=settings.redis_url,
                     api_keys_file=str(write_keys_file(tmp_path / "keys.toml")))
    target = tmp_path / "out.jsonl"
    async with serving(keyed) as live:
        status, out, err = await export("--url", live.url, "--output", str(target), *args,
                                        env=env)
    assert status == 2 and words in err, err
    assert "Traceback" not in err and out == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.toml"]


@pytest.mark.parametrize(("args", "status", "words"), [
    (("--url", "http://127.0.0.1:{port}"), 1, "cannot reach http://127.0.0.1:"),
    (("--url", "ftp://hub"), 2, "is not an http:// or https:// URL"),
    (("--status", "ended"), 2, "argument --status: invalid choice: 'ended'"),
    (("--ended-before", "last week"), 2, "'last week' is not an ISO 8601 time"),
    (("--page-size", "0"), 2, "--page-size"),
])
async def test_bad_options_and_an_unreachable_hub_exit_non_zero_plainly(
    args: tuple[str, ...], status: int, words: str,
) -> None:
    got, out, err = await export(*(a.format(port=free_port()) for a in args))
    assert (got, out) == (status, b""), err
    assert words in err and "Traceback" not in err
