"""Shared fixtures: a real redis-server (and a real Redis Cluster) per test
session, settings, clients, and the hub in process.

Servers listen on 127.0.0.1 on free ports, are flushed before every test that
asks for them, and are stopped by PID when the session ends. What the fixtures
are built from lives in tests/support/ (redis_servers, processes, hubs).

The storage engine is one parameter, ``redis_engine``: ``single`` (one
redis-server) unless a test module or test is marked ``both_engines``, which
runs it on a 3-master Redis Cluster too. ``redis_url``, ``settings``,
``sync_redis`` and ``aredis`` follow the engine, so a suite runs on both
without a copied test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import httpx
import hypothesis
import pytest
import redis
import redis.asyncio as aioredis

from callhub.settings import Settings
from callhub.tokens import use_secret
from tests.support.hubs import hub_client
from tests.support.redis_servers import (
    DURABLE,
    RedisClusterNodes,
    RedisServer,
    async_client,
    start_redis_cluster,
    start_redis_server,
    sync_client,
)

# Speed is measured in bench/, not asserted here: on a shared 2-core machine one
# example may take 300 ms while the suite runs, which is no failure.
hypothesis.settings.register_profile("callhub", deadline=None)
hypothesis.settings.load_profile("callhub")

ENGINES = ("single", "cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_engines`` run once per engine; others on one redis-server."""
    if "redis_engine" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("redis_engine", ENGINES, indirect=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis_server()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    cluster = start_redis_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own that keeps every write (AOF, fsync
    always), for a test to stop and ``restart()`` on its port with its data."""
    server = start_redis_server(None, *DURABLE)
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_engine(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_engine: str) -> str:
    """The session's redis-server (or cluster), flushed for this test."""
    if redis_engine == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        for server in cluster.servers:
            with server.client() as client:
                client.flushall()
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_server")
    with server.client() as client:
        client.flushall()
    return server.url


@pytest.fixture
def settings(redis_url: str, redis_engine: str) -> Settings:
    return Settings(redis_url=redis_url, redis_cluster=redis_engine == "cluster")


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[redis.Redis]:
    client = sync_client(settings)
    yield client  # type: ignore[misc]  # a cluster client answers the same commands
    client.close()


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = async_client(settings)
    yield client  # type: ignore[misc]  # a cluster client answers the same commands
    await client.aclose()


@pytest.fixture(scope="session")
def callhub_env() -> dict[str, str]:
    """The environment for running ``callhub`` as a subprocess: no CALLHUB_* leaks in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The hub app in process, through an HTTP client wired into it."""
    async with hub_client(settings) as client:
        yield client


@pytest.fixture(autouse=True)
def _unkeyed_tokens() -> Iterator[None]:
    """Each test starts with no server secret installed (an app a test builds
    installs its own), so no test's tokens depend on which ran before it."""
    use_secret(None)
    yield
    use_secret(None)
