"""Shared fixtures: a real redis-server (and a real Redis Cluster) per test
session, settings, clients, hub and demo processes.

Servers listen on 127.0.0.1 on free ports, are flushed before every test that
asks for them, and are stopped by PID when the session ends.

The storage engine is one parameter, ``redis_engine``: ``single`` (one
redis-server) unless a test module or test is marked ``both_engines``, which
runs it on a 3-master Redis Cluster too. ``redis_url``, ``settings``,
``sync_redis`` and ``aredis`` follow the engine, so a suite runs on both
without a copied test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from starlette.applications import Starlette

from callhub.connections import RedisClient
from callhub.settings import Settings
from hub.api.replica import Replica
from hub.app import create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object], *, timeout: float = 10.0, what: str = "",
    interval: float = 0.01,
) -> None:
    """Poll ``condition`` until it is truthy; fail the test at the deadline.

    Other exceptions count as "not yet" (a server still starting refuses
    connections); an AssertionError from the condition ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except AssertionError:
            raise
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class RedisServer:
    """A redis-server process this test session started and owns."""

    port: int
    process: subprocess.Popen[bytes]
    directory: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM this PID, then SIGKILL if it has not gone by the deadline."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_redis_server(port: int | None = None, *extra: str) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    directory = tempfile.mkdtemp(prefix="callhub-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, process, directory)
    client = server.client()
    try:
        wait_for(client.ping, what=f"redis-server on port {port}")
    except AssertionError:
        server.stop()
        raise
    finally:
        client.close()
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis_server()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@dataclass
class RedisClusterNodes:
    """The redis-server processes of a Redis Cluster this test session started."""

    servers: list[RedisServer]
    node_args: list[tuple[str, ...]]

    @property
    def url(self) -> str:
        """Any one node: the cluster client learns the others from it."""
        return self.servers[0].url

    def restart(self, index: int) -> RedisServer:
        """Start a stopped node again on its port and directory (its nodes.conf)."""
        old = self.servers[index]
        again = start_redis_server(old.port, *self.node_args[index], "--dir", old.directory)
        shutil.rmtree(again.directory, ignore_errors=True)  # the fresh one it made, unused
        self.servers[index] = RedisServer(old.port, again.process, old.directory)
        return self.servers[index]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.directory, ignore_errors=True)


def start_redis_cluster(masters: int = 3, replicas: int = 0) -> RedisClusterNodes:
    """A real cluster on loopback: ``redis-server --cluster-enabled yes`` nodes
    joined by ``redis-cli --cluster create``, ready when every node says ok."""
    servers: list[RedisServer] = []
    node_args: list[tuple[str, ...]] = []
    try:
        for _ in range(masters * (1 + replicas)):
            # The bus port defaults to port + 10000, past 65535 for most free
            # ports: give it its own free port.
            args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000", "--cluster-port", str(free_port()))
            servers.append(start_redis_server(None, *args))
            node_args.append(args)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{server.port}" for server in servers),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False)
        assert created.returncode == 0, created.stdout + created.stderr

        def ready() -> bool:
            for server in servers:
                with server.client() as client:
                    info = client.cluster("INFO")  # parsed into a dict by redis-py
                    if info.get("cluster_state") != "ok" or \
                            int(info.get("cluster_known_nodes", 0)) != len(servers):
                        return False
                    role = client.info("replication")
                    if role["role"] == "master" and replicas and \
                            role.get("slave0", {}).get("state") != "online":
                        return False
            return True

        wait_for(ready, timeout=30, what="the Redis Cluster to be ready", interval=0.1)
    except BaseException:
        RedisClusterNodes(servers, node_args).stop()
        raise
    return RedisClusterNodes(servers, node_args)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    cluster = start_redis_cluster()
    yield cluster
    cluster.stop()


ENGINES = ("single", "cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_engines`` run once per engine; others on one redis-server."""
    if "redis_engine" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("redis_engine", ENGINES, indirect=True)


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


def engine_env(settings: Settings) -> dict[str, str]:
    """The environment that points a ``callhub`` process at ``settings``' engine."""
    return {"CALLHUB_REDIS_CLUSTER": "true"} if settings.redis_cluster else {}


def sync_client(settings: Settings) -> redis.Redis | RedisCluster:
    """A blocking client for ``settings``' Redis: to set up and check state."""
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url)
    return redis.Redis.from_url(settings.redis_url)


def async_client(settings: Settings) -> RedisClient:
    if settings.redis_cluster:
        return AsyncRedisCluster.from_url(settings.redis_url)
    return aioredis.Redis.from_url(settings.redis_url)


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


# ---------------------------------------------------------------------------
# The hub: in process (ASGI, fast) and as a real `callhub serve` process


@contextlib.asynccontextmanager
async def hub_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client wired straight into a hub app, its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with hub_client(settings) as client:
        yield client


@dataclass
class CallhubProcess:
    """A `callhub` process (serve, demo) this test started and stops by PID."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


HubProcess = CallhubProcess
DemoProcess = CallhubProcess


def start_callhub(
    command: Sequence[str], port: int, ready: Callable[[CallhubProcess], object], what: str, *,
    env: dict[str, str] | None = None, scheme: str = "http", log_dir: Path | None = None,
) -> CallhubProcess:
    """``callhub <command>`` with a clean environment, its output in a log file,
    returned once ``ready`` holds (and stopped if it never does)."""
    log = Path(tempfile.mkstemp(prefix=f"callhub-{command[0]}-", suffix=".log", dir=log_dir)[1])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    environment.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "callhub.cli", *command],
                                   stdout=out, stderr=subprocess.STDOUT, env=environment)
    started = CallhubProcess(f"{scheme}://127.0.0.1:{port}", process, log)

    def up() -> object:
        if process.poll() is not None:
            raise AssertionError(f"callhub {command[0]} exited: {started.output()}")
        return ready(started)

    try:
        wait_for(up, timeout=20, what=what, interval=0.05)
    except BaseException:
        started.stop()
        raise
    return started


def start_hub(
    redis_url: str, *args: str, env: dict[str, str] | None = None, scheme: str = "http",
    ready: Callable[[str], object] | None = None, log_dir: Path | None = None,
    port: int | None = None,
) -> CallhubProcess:
    """``callhub serve`` on 127.0.0.1 (a free port unless given), once it answers."""
    port = port or free_port()

    def answers(hub: CallhubProcess) -> object:
        if ready is not None:
            return ready(hub.url)
        return httpx.get(f"{hub.url}/healthz", timeout=1).status_code == 200

    return start_callhub(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--redis-url", redis_url, *args],
        port, answers, "callhub serve to answer", env=env, scheme=scheme, log_dir=log_dir)


def start_demo(*args: str, env: dict[str, str] | None = None) -> CallhubProcess:
    """``callhub demo`` on a free port, once it has a live call."""
    port = free_port()

    def has_a_call(demo: CallhubProcess) -> object:
        page = httpx.get(f"{demo.url}/v1/calls", timeout=1).json()
        return page["total_count"] > 0

    return start_callhub(["demo", "--port", str(port), *args], port, has_a_call,
                         "callhub demo to show a live call", env=env)


@dataclass
class LiveHub:
    """A hub app served by uvicorn inside the test's event loop (inspectable)."""

    url: str
    app: Starlette

    @property
    def hub(self) -> Replica:
        hub: Replica = self.app.state.hub
        return hub


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[LiveHub]:
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise AssertionError("the in-process hub did not start")
            await asyncio.sleep(0.01)
        live = LiveHub(f"http://127.0.0.1:{port}", app)
        await asyncio.wait_for(live.hub.dispatcher.ready.wait(), 10)
        yield live
    finally:
        if server.started:
            app.state.hub.dispatcher.close_all()
        server.should_exit = True
        await asyncio.wait_for(task, 15)
