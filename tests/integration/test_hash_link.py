"""Get Call's pipelined Redis link on a real redis-server: right answers under
concurrency, a Redis lost or frozen mid-flight is a prompt failure (503 through
the API, never a hang), the next read connects again, closing the client closes
the link, a reply never predates a commit acknowledged before the read, and TLS,
ACL users and databases work as redis-py set them up (asyncio's and uvloop's
transports)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callhub.settings import Settings
from hub.store.hash_reader import PipelinedHashReader
from tests.support.hubs import hub_client
from tests.support.polling import async_wait_until
from tests.support.processes import free_port
from tests.support.redis_servers import RedisServer, start_redis_server
from tests.support.strategies import call_started, transition
from workers.commit.publisher import CallPublisher


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to freeze, kill and restart."""
    server = start_redis_server()
    yield server
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@contextlib.asynccontextmanager
async def client_of(server: RedisServer, **kwargs: float) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url, **kwargs)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await asyncio.wait_for(client.aclose(), 10)


async def test_concurrent_reads_each_get_their_own_hash(own_redis: RedisServer) -> None:
    async with client_of(own_redis) as client:
        for n in range(300):
            await client.hset(f"h{n}", mapping={"n": n, "pad": "x" * (n % 50)})
        reader = PipelinedHashReader(client)
        for _ in range(3):
            answers = await asyncio.gather(*(reader.hgetall(f"h{n}") for n in range(300)),
                                           reader.hgetall("missing"))
            assert answers[:-1] == [{b"n": str(n).encode(), b"pad": b"x" * (n % 50)}
                                    for n in range(300)]
            assert answers[-1] == {}


async def test_redis_killed_mid_flight_fails_the_reads_and_the_next_read_reconnects(
    own_redis: RedisServer,
) -> None:
    async with client_of(own_redis) as client:
        await client.hset("h", "k", "v")
        reader = PipelinedHashReader(client)
        assert await reader.hgetall("h") == {b"k": b"v"}
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        in_flight = [asyncio.ensure_future(reader.hgetall("h")) for _ in range(5)]
        await async_wait_until(lambda: reader.in_flight == 5, what="the reads to be in flight")
        own_redis.process.kill()  # SIGKILL: the kernel resets its sockets
        own_redis.process.wait(10)
        done, _ = await asyncio.wait(in_flight, timeout=5)
        assert len(done) == 5, "a read hung after its connection was lost"
        assert all(isinstance(f.exception(), RedisConnectionError) for f in done)

        restarted = start_redis_server(own_redis.port)
        try:
            async with client_of(restarted) as writer:
                await writer.hset("h", "k", "again")
            assert await reader.hgetall("h") == {b"k": b"again"}
        finally:
            restarted.stop()


async def test_a_frozen_redis_times_the_reads_out_and_a_thawed_one_serves_again(
    own_redis: RedisServer,
) -> None:
    async with client_of(own_redis, socket_timeout=0.3) as client:
        await client.hset("h", "k", "v")
        reader = PipelinedHashReader(client)
        assert await reader.hgetall("h") == {b"k": b"v"}
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(reader.hgetall("h"), 10)
        assert time.monotonic() - started < 5
        os.kill(own_redis.process.pid, signal.SIGCONT)
        assert await asyncio.wait_for(reader.hgetall("h"), 10) == {b"k": b"v"}


async def test_closing_the_client_closes_the_link_at_once(own_redis: RedisServer) -> None:
    client = aioredis.Redis.from_url(own_redis.url)
    reader = PipelinedHashReader(client)
    assert await reader.hgetall("nothing") == {}
    with own_redis.client() as watcher:
        assert len(watcher.client_list()) == 2  # the link and the watcher
        started = time.monotonic()
        await asyncio.wait_for(client.aclose(), 10)
        assert time.monotonic() - started < 1  # redis-py's close does not wait on the link
        await async_wait_until(lambda: len(watcher.client_list()) == 1,
                               what="the link to be closed")


async def test_get_call_answers_503_when_redis_dies_mid_request(own_redis: RedisServer) -> None:
    settings = Settings(redis_url=own_redis.url)
    async with client_of(own_redis) as client:
        await CallPublisher(client, settings).commit_many([call_started("c-1")])
    async with hub_client(settings) as api:
        assert (await api.get("/v1/calls/c-1")).status_code == 200
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        answers = [asyncio.ensure_future(api.get("/v1/calls/c-1")) for _ in range(3)]
        store = api._transport.app.state.replica.store  # type: ignore[attr-defined]
        await async_wait_until(lambda: store._hashes.in_flight == 3,
                               what="the reads to be in flight")
        own_redis.process.kill()
        own_redis.process.wait(10)
        for answer in await asyncio.wait_for(asyncio.gather(*answers), 10):
            assert answer.status_code == 503
            assert answer.headers["retry-after"]
            assert answer.json()["error"]["code"] == "unavailable"


async def test_a_reply_never_predates_a_commit_acknowledged_before_the_read(
    redis_url: str, aredis: aioredis.Redis, settings: Settings,
) -> None:
    publisher = CallPublisher(aredis, settings)
    await publisher.commit_many([call_started("c-1")])
    async with hub_client(settings) as api:
        # Readers keep the link busy, so each checked read joins a batch in flight.
        stop = asyncio.Event()

        async def busy() -> None:
            while not stop.is_set():
                await api.get("/v1/calls/c-1")

        noise = [asyncio.ensure_future(busy()) for _ in range(8)]
        try:
            for seq in range(2, 102):
                [outcome] = await publisher.commit_many(
                    [transition("c-1", seq, f"state-{seq}", f"state-{seq - 1}")])
                call = (await api.get("/v1/calls/c-1")).json()
                assert call["current_state"] == f"state-{seq}"
                assert outcome.entry_id is not None
        finally:
            stop.set()
            await asyncio.gather(*noise)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, int, Path]]:
    """A redis-server with a TLS port too (certificates from trustme) and an ACL user."""
    authority = trustme.CA()
    authority.cert_pem.write_to_path(ca := tmp_path / "ca.pem")
    issued = authority.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(key := tmp_path / "key.pem")
    issued.cert_chain_pems[0].write_to_path(cert := tmp_path / "cert.pem")
    tls_port = free_port()
    server = start_redis_server(
        None, "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file",
        str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        "--user", "reader", "on", ">secret", "~*", "&*", "+@all",
    )
    yield server, tls_port, ca
    server.stop()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_link_works_over_tls_with_an_acl_user_and_a_database(
    tls_redis: tuple[RedisServer, int, Path], loop: str,
) -> None:
    server, tls_port, ca = tls_redis
    with server.client() as plain:
        plain.select(3)  # type: ignore[no-untyped-call]
        plain.hset("h", "k", "in db 3")
    url = f"rediss://reader:secret@127.0.0.1:{tls_port}/3?ssl_ca_certs={ca}"

    async def read() -> list[dict[bytes, bytes]]:
        client = aioredis.Redis.from_url(url)
        try:
            reader = PipelinedHashReader(client)
            answers = await asyncio.gather(*(reader.hgetall("h") for _ in range(20)))
            assert reader._fallback is None  # the TLS transport was taken over
            return answers
        finally:
            await asyncio.wait_for(client.aclose(), 10)

    answers = uvloop.run(read()) if loop == "uvloop" else asyncio.run(read())
    assert answers == [{b"k": b"in db 3"}] * 20
