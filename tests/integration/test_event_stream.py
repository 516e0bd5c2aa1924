"""The live event stream on a real redis-server (I3-I6)."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import time
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callhub import events as ev
from callhub.cursor import Cursor
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from hub.api.auth import hash_key
from tests.support.fences import fence
from tests.support.hubs import serving
from tests.support.polling import async_wait_until
from tests.support.processes import free_port, start_hub
from tests.support.redis_servers import async_client, engine_env, start_redis_server, sync_client
from tests.support.spec_examples import spec_events
from tests.support.sse import subscribe
from tests.support.strategies import action, call_started, dtmf, terminated, transition
from workers.commit.publisher import CallPublisher, CommitOutcome

pytestmark = pytest.mark.both_engines

FAST_PING = 200  # ms: the ping carries the cursor, which the tests use as a fence


def fast(settings: Settings, **extra: object) -> Settings:
    """The engine's settings (one redis-server or the cluster), with fast pings."""
    return msgspec.structs.replace(settings, ping_interval_ms=FAST_PING, **extra)


async def test_the_spec_examples_arrive_byte_for_byte_as_committed(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = fast(settings)
    async with serving(settings) as live:
        query = {"event_types": "call_started,speech_final,call_terminated"}
        async with subscribe(f"{live.url}/v1/calls/events", params=query) as stream, \
                subscribe(f"{live.url}/v1/calls/events",
                          params={"session_id": "call-abc-123"}) as by_session:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert stream.response.headers["cache-control"] == "no-store"
            assert stream.response.headers["x-accel-buffering"] == "no"
            assert "content-encoding" not in stream.response.headers
            await CallPublisher(aredis, settings).commit_many(spec_events())
            await async_wait_until(lambda: len(stream.events) == 3 and len(by_session.events) == 3)
        committed = sync_redis.xrange(Keyspace().log(0))
        for reader in (stream, by_session):
            assert reader.frames[0].retry == 3000
            assert [f.event for f in reader.events] == [
                "call_started", "speech_final", "call_terminated"]
            assert [f.data for f in reader.events] == [fields[b"data"] for _, fields in committed]


# -- filters ---------------------------------------------------------------------

SESSIONS = ["s-1", "s-2", "s-3"]
DIALOGS = ["helpdesk", "billing"]


def call_script(sid: str, dialog: str, kinds: list[str]) -> list[ev.Event]:
    events: list[ev.Event] = [call_started(sid, dialog=dialog)]
    for kind in kinds:
        seq = len(events) + 1
        if kind == "dtmf":
            events.append(dtmf(sid, seq))
        elif kind == "transition":
            events.append(transition(sid, seq, f"state-{seq}"))
        else:
            events.append(action(sid, seq, "hold"))
    events.append(terminated(sid, len(events) + 1))
    return events


@hypothesis_settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event_types=st.none() | st.sets(st.sampled_from(
        ["call_started", "dtmf_received", "state_transition", "action_executed",
         "call_terminated"]), min_size=1),
    session_id=st.sampled_from(["", *SESSIONS]),
    dialog_name=st.sampled_from(["", *DIALOGS]),
    scripts=st.lists(st.lists(st.sampled_from(["dtmf", "transition", "hold"]), max_size=4),
                     min_size=1, max_size=3),
)
def test_the_stream_delivers_exactly_the_matching_events_in_order(
    settings: Settings, event_types: set[str] | None, session_id: str,
    dialog_name: str, scripts: list[list[str]],
) -> None:
    with sync_client(settings) as sync:
        sync.flushall()
    settings = fast(settings, shards=2)
    calls = [call_script(SESSIONS[n], DIALOGS[n % 2], kinds) for n, kinds in enumerate(scripts)]
    # Interleave the calls' events, keeping each call's order.
    order = [n for n, events in enumerate(calls) for _ in events]
    random.Random(len(order)).shuffle(order)
    positions = [0] * len(calls)
    interleaved: list[ev.Event] = []
    for n in order:
        interleaved.append(calls[n][positions[n]])
        positions[n] += 1

    def wanted(event: ev.Event) -> bool:
        dialog = DIALOGS[SESSIONS.index(event.session_id) % 2]
        return ((event_types is None or type(event).__struct_config__.tag in event_types)
                and (not session_id or event.session_id == session_id)
                and (not dialog_name or dialog == dialog_name))

    expected = [ev.encode_event(e) for e in interleaved if wanted(e)]
    params = {"session_id": session_id, "dialog_name": dialog_name}
    if event_types:
        params["event_types"] = ",".join(sorted(event_types))

    async def run() -> list[bytes]:
        async with serving(settings) as live, \
                subscribe(f"{live.url}/v1/calls/events", params=params) as stream:
            client = async_client(settings)
            outcomes = await CallPublisher(client, settings).commit_many(interleaved)
            await client.aclose()
            assert all(o.status == "committed" for o in outcomes)
            await fence(stream, outcomes, settings.shards)
            return [f.data or b"" for f in stream.events]

    received = asyncio.run(run())
    # The data arrives byte for byte as committed, in commit order per shard;
    # across shards order is the readers', so compare per call.
    assert sorted(received) == sorted(expected)
    for sid in SESSIONS:
        mine = [d for d in received if f'"session_id":"{sid}"'.encode() in d]
        assert mine == [d for d in expected if f'"session_id":"{sid}"'.encode() in d]


# -- history, resume, reset ------------------------------------------------------


async def test_history_then_live_misses_and_repeats_nothing_while_commits_race(
    redis_url: str, settings: Settings, aredis: aioredis.Redis
) -> None:
    settings = fast(settings, shards=2)
    publisher = CallPublisher(aredis, settings)
    sids = [f"h-{n}" for n in range(8)]
    await publisher.commit_many([call_started(sid) for sid in sids])
    next_seq = dict.fromkeys(sids, 2)
    stop = asyncio.Event()

    async def keep_committing() -> list[CommitOutcome]:
        done: list[CommitOutcome] = []
        while not stop.is_set():
            batch = []
            for sid in random.sample(sids, 3):
                batch.append(dtmf(sid, next_seq[sid]))
                next_seq[sid] += 1
            done += await publisher.commit_many(batch)
            await asyncio.sleep(0)
        return done

    async with serving(settings) as live:
        committer = asyncio.create_task(keep_committing())
        await async_wait_until(lambda: min(next_seq.values()) > 5)
        async with subscribe(f"{live.url}/v1/calls/events",
                             params={"include_history": "true"}) as stream:
            await async_wait_until(lambda: len(stream.events) > 40)
            stop.set()
            outcomes = await committer
            await fence(stream, outcomes, settings.shards)
    for sid in sids:
        seqs = [ev.decode_event(f.data or b"").seq for f in stream.events
                if f'"session_id":"{sid}"'.encode() in (f.data or b"")]
        assert seqs == list(range(1, next_seq[sid])), sid  # from the start, no gap, no repeat
    # History frames carry no id; the seam's cursor follows them.
    first_id = next(i for i, f in enumerate(stream.frames) if f.id is not None)
    assert stream.frames[first_id].event is None
    assert all(f.id is None for f in stream.frames[:first_id])


async def test_a_client_resumed_on_either_replica_gets_exactly_what_a_steady_one_got(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, tmp_path: object
) -> None:
    env = {"CALLHUB_PING_INTERVAL": "200ms", "CALLHUB_SHARDS": "2"}
    env.update(engine_env(settings))
    hubs = [start_hub(redis_url, env=env), start_hub(redis_url, env=env)]
    settings = fast(settings, shards=2)
    publisher = CallPublisher(aredis, settings)
    rng = random.Random(7)
    try:
        sids = [f"r-{n}" for n in range(5)]
        seqs = dict.fromkeys(sids, 1)
        outcomes = await publisher.commit_many([call_started(sid) for sid in sids])
        async with subscribe(f"{hubs[0].url}/v1/calls/events") as steady:
            resumed: list[bytes] = []
            cursor: str | None = None
            for hop in range(8):
                hub = hubs[hop % 2]
                headers = {"Last-Event-ID": cursor} if cursor else {}
                async with subscribe(f"{hub.url}/v1/calls/events", headers=headers) as client:
                    for _ in range(rng.randint(1, 4)):
                        batch = []
                        for sid in rng.sample(sids, 3):
                            seqs[sid] += 1
                            batch.append(dtmf(sid, seqs[sid]))
                        outcomes += await publisher.commit_many(batch)
                    # Leave at a random point: after some of what is due arrived.
                    await async_wait_until(lambda c=client: len(c.events) >= 1)
                    await asyncio.sleep(rng.random() * 0.05)
                    got = list(client.events)
                resumed += [f.data or b"" for f in got]
                ids = [f.id for f in client.frames if f.id]
                cursor = ids[-1] if ids else cursor
            async with subscribe(f"{hubs[1].url}/v1/calls/events",
                                 headers={"Last-Event-ID": cursor or ""}) as last:
                await fence(last, outcomes, 2)
                await fence(steady, outcomes, 2)
                resumed += [f.data or b"" for f in last.events]
        assert resumed == [f.data for f in steady.events] or sorted(resumed) == sorted(
            f.data or b"" for f in steady.events)
        assert len(resumed) == len(set(resumed)) == len(outcomes) - len(sids)
    finally:
        for hub in hubs:
            hub.stop()


async def test_a_cursor_older_than_retention_gets_stream_reset_then_the_oldest_events(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    settings = fast(settings, log_retention_ms=1)
    publisher = CallPublisher(aredis, settings)
    first = await publisher.commit_many([call_started(f"old-{n}") for n in range(300)])
    old_cursor = Cursor((tuple(int(x) for x in (first[0].entry_id or "").split("-")),))
    now_ms = int(sync_redis.time()[0]) * 1000
    await async_wait_until(lambda: int(sync_redis.time()[0]) * 1000 > now_ms + 5)
    later = await publisher.commit_many([call_started(f"new-{n}") for n in range(5)])
    oldest_kept = sync_redis.xrange(Keyspace().log(0), count=1)[0][0].decode()
    assert oldest_kept != first[1].entry_id  # the log was trimmed past the cursor
    async with serving(settings) as live, subscribe(
            f"{live.url}/v1/calls/events",
            params={"last_event_id": old_cursor.encode()}) as stream:
        await fence(stream, later, 1)
    reset = stream.events[0]
    assert reset.event == "stream_reset"
    body = ev.msgspec.json.decode(reset.data or b"")
    assert body["reason"] == "cursor_expired"
    assert reset.id == body["oldest_position"]
    delivered = [ev.decode_event(f.data or b"").session_id for f in stream.events[1:]]
    kept = [fields[b"session_id"].decode() for _, fields in sync_redis.xrange(Keyspace().log(0))]
    assert delivered == kept  # from the oldest retained entry on, nothing skipped


async def test_bad_stream_parameters_are_400s(api: httpx.AsyncClient) -> None:
    cases = [
        ({"event_types": "call_started,bogus"}, {}, "event_types", "valid types"),
        ({"session_id": "a{b"}, {}, "session_id", "contains"),
        ({"last_event_id": "not-a-cursor"}, {}, "last_event_id", "cursor"),
        ({}, {"Last-Event-ID": "AAAA"}, "Last-Event-ID", "cursor"),
        ({"include_history": "maybe"}, {}, "include_history", "true or false"),
        ({"colour": "red"}, {}, "colour", "unknown"),
    ]
    for params, headers, param, text in cases:
        answer = await api.get("/v1/calls/events", params=params, headers=headers)
        assert answer.status_code == 400, (params, headers)
        error = answer.json()["error"]
        assert error["param"] == param and text in error["message"]


# -- slow clients, leaks, shutdown, keys -------------------------------------------


async def test_a_stalled_client_is_cut_off_and_does_not_delay_the_others(
    redis_url: str, settings: Settings, aredis: aioredis.Redis
) -> None:
    settings = fast(settings, subscriber_buffer_bytes=2 * 1024 * 1024, write_timeout_ms=2000)
    publisher = CallPublisher(aredis, settings)
    async with serving(settings) as live:
        host, port = live.url.removeprefix("http://").split(":")
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window, set first
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
        _, writer = await asyncio.open_connection(sock=raw)
        writer.write(b"GET /v1/calls/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()  # ...and never read again
        await async_wait_until(lambda: live.replica.dispatcher.count == 1)
        stalled = next(iter(live.replica.dispatcher.subscribers()))
        async with subscribe(f"{live.url}/v1/calls/events") as healthy:
            await async_wait_until(lambda: live.replica.dispatcher.count == 2)
            sids = [f"big-{n}" for n in range(500)]
            outcomes = await publisher.commit_many([call_started(sid) for sid in sids])
            for seq in range(2, 46):  # ~6 MB: more than the kernel buffers on both sides hold
                outcomes += await publisher.commit_many([dtmf(sid, seq) for sid in sids])
            await async_wait_until(lambda: len(healthy.events) == len(outcomes), timeout=60)
            assert not healthy.ended
            await async_wait_until(lambda: live.replica.dispatcher.count == 1, timeout=10,
                                   what="the stalled subscriber to be cut off")
            # Its task ended too, though the client still holds the connection open
            # without reading: the write watchdog got it out of the stuck send.
            assert stalled.task is not None
            await async_wait_until(stalled.task.done, timeout=10, what="the stalled stream to end")
            assert stalled.closed == "stalled"
        writer.close()


async def test_a_thousand_connect_disconnect_cycles_leave_nothing_behind(
    redis_url: str, settings: Settings, aredis: aioredis.Redis
) -> None:
    settings = fast(settings)
    async with serving(settings) as live:
        await CallPublisher(aredis, settings).commit(call_started("c-1"))
        async with httpx.AsyncClient(timeout=10) as client:
            async with subscribe(f"{live.url}/v1/calls/events", client=client) as warm:
                await async_wait_until(lambda: warm.frames)
            await async_wait_until(lambda: live.replica.dispatcher.count == 0)
            baseline = len(asyncio.all_tasks())
            for n in range(1000):
                params = {"include_history": "true"} if n % 2 else {"session_id": "c-1"}
                async with subscribe(f"{live.url}/v1/calls/events", params=params,
                                     client=client) as stream:
                    await async_wait_until(lambda s=stream: s.frames)
        await async_wait_until(lambda: live.replica.dispatcher.count == 0,
                               what="no subscriber left")
        await async_wait_until(lambda: len(asyncio.all_tasks()) <= baseline,
                               what=f"tasks back to {baseline}")


async def test_sigterm_ends_open_streams_within_seconds(redis_url: str, settings: Settings) -> None:
    hub = start_hub(redis_url, env=engine_env(settings))
    async with subscribe(f"{hub.url}/v1/calls/events") as stream:
        await async_wait_until(lambda: stream.frames)
        started = time.monotonic()
        hub.process.send_signal(signal.SIGTERM)
        await async_wait_until(lambda: stream.ended, timeout=10, what="the stream to end")
        assert time.monotonic() - started < 3
    hub.process.wait(timeout=10)
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert hub.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in hub.output()


async def test_a_scoped_key_streams_only_its_dialogs(
    redis_url: str, settings: Settings, aredis: aioredis.Redis, tmp_path: object
) -> None:
    keys_file = Path(str(tmp_path)) / "keys.toml"
    keys_file.write_text(f'[[keys]]\nname = "help"\nsha256 = "{hash_key("help-key")}"\n'
                         'dialogs = ["helpdesk"]\n')
    settings = fast(settings, api_keys="all-key", api_keys_file=str(keys_file))
    publisher = CallPublisher(aredis, settings)
    async with serving(settings) as live:
        async with httpx.AsyncClient() as plain:
            denied = await plain.get(f"{live.url}/v1/calls/events")
            assert denied.status_code == 401
        async with subscribe(f"{live.url}/v1/calls/events",
                             headers={"X-API-Key": "help-key"}) as scoped, \
                subscribe(f"{live.url}/v1/calls/events",
                          params={"api_key": "all-key"}) as everything:
            outcomes = await publisher.commit_many([
                call_started("h-1", dialog="helpdesk"), call_started("b-1", dialog="billing"),
                dtmf("h-1", 2), dtmf("b-1", 2)])
            await fence(everything, outcomes, 1)
            await fence(scoped, outcomes, 1)
    assert len(everything.events) == 4
    assert {ev.decode_event(f.data or b"").session_id for f in scoped.events} == {"h-1"}


async def test_subscribers_lose_nothing_across_a_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    server = start_redis_server(port, "--appendonly", "yes", "--appendfsync", "always")
    url = server.url
    settings = Settings(redis_url=url, ping_interval_ms=FAST_PING)
    client = aioredis.Redis.from_url(url)
    publisher = CallPublisher(client, settings, retry_for_s=20)
    try:
        async with serving(settings) as live, \
                subscribe(f"{live.url}/v1/calls/events") as stream:
            before = await publisher.commit_many([call_started(f"c-{n}") for n in range(5)])
            await async_wait_until(lambda: len(stream.events) == 5)
            server.stop()  # a clean shutdown: the AOF has everything
            server = start_redis_server(port, "--appendonly", "yes", "--appendfsync", "always",
                                        "--dir", server.directory)
            after = await publisher.commit_many([dtmf(f"c-{n}", 2) for n in range(5)])
            await fence(stream, after, 1)
            assert not stream.ended  # the subscriber stayed connected throughout
        got = [f.data for f in stream.events]
        assert got == [ev.encode_event(o.event) for o in before + after]
    finally:
        await client.aclose()
        server.stop()


# -- served ahead of the middleware: the same CORS policy as every other path ----------


async def test_the_stream_answers_cors_exactly_as_the_rest_of_the_api(settings: Settings) -> None:
    origins = {"*": ["https://a.example", None],
               "https://a.example, https://b.example": ["https://b.example",
                                                        "https://evil.example", None],
               "": ["https://a.example", None]}
    cors_headers = ("access-control-allow-origin", "access-control-allow-credentials",
                    "access-control-expose-headers", "vary")
    for setting, asking in origins.items():
        async with serving(fast(settings, cors_origins=setting)) as live, \
                httpx.AsyncClient(timeout=10) as client:
            for origin in asking:
                headers = {"Origin": origin} if origin else {}
                rest = await client.get(f"{live.url}/v1/calls", headers=headers)
                async with subscribe(f"{live.url}/v1/calls/events", headers=headers,
                                     client=client) as stream:
                    got = stream.response.headers
                    assert stream.response.status_code == 200
                    assert {h: got.get_list(h) for h in cors_headers} == {
                        h: rest.headers.get_list(h) for h in cors_headers}, (setting, origin)
                # An error on the stream's path carries them too (a browser must read it).
                bad = await client.get(f"{live.url}/v1/calls/events",
                                       params={"event_types": "bogus"}, headers=headers)
                assert bad.status_code == 400
                assert {h: bad.headers.get_list(h) for h in cors_headers} == {
                    h: rest.headers.get_list(h) for h in cors_headers}, (setting, origin)
            if setting:
                preflight = await client.options(f"{live.url}/v1/calls/events", headers={
                    "Origin": asking[0] or "", "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "last-event-id"})
                assert preflight.status_code == 200
                assert "last-event-id" in preflight.headers[
                    "access-control-allow-headers"].lower()
            refused = await client.post(f"{live.url}/v1/calls/events")
            assert refused.status_code == 405
