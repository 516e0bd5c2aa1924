"""Shared fixtures: a real redis-server per test session, settings, clients.

The server listens on 127.0.0.1 on a free port, is flushed before every test
that asks for it, and is stopped by PID when the session ends.
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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette

from hub.app import create_app
from hub.replica import Hub
from hub.settings import Settings

DATA = Path(__file__).parent / "data"


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


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, flushed for this test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url)


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
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
class HubProcess:
    """A `callhub serve` process this test started and stops by PID."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_hub(
    redis_url: str, *args: str, env: dict[str, str] | None = None, scheme: str = "http",
    ready: Callable[[str], object] | None = None, log_dir: Path | None = None,
) -> HubProcess:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="callhub-hub-", suffix=".log", dir=log_dir)[1])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    environment.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--host", "127.0.0.1", "--port",
             str(port), "--redis-url", redis_url, *args],
            stdout=out, stderr=subprocess.STDOUT, env=environment,
        )
    hub = HubProcess(f"{scheme}://127.0.0.1:{port}", process, log)

    def up() -> object:
        if process.poll() is not None:
            raise AssertionError(f"callhub serve exited: {hub.output()}")
        if ready is not None:
            return ready(hub.url)
        return httpx.get(f"{hub.url}/healthz", timeout=1).status_code == 200

    try:
        wait_for(up, timeout=20, what="callhub serve to answer", interval=0.05)
    except BaseException:
        hub.stop()
        raise
    return hub



@dataclass
class DemoProcess:
    """A `callhub demo` process this test started and stops by PID."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_demo(*args: str, env: dict[str, str] | None = None) -> DemoProcess:
    """``callhub demo`` on a free port, once it prints its welcome and has a live call."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="callhub-demo-", suffix=".log")[1])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLHUB_")}
    environment.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "demo", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, env=environment,
        )
    demo = DemoProcess(f"http://127.0.0.1:{port}", process, log)

    def has_a_call() -> object:
        if process.poll() is not None:
            raise AssertionError(f"callhub demo exited: {demo.output()}")
        page = httpx.get(f"{demo.url}/v1/calls", timeout=1).json()
        return page["total_count"] > 0

    try:
        wait_for(has_a_call, timeout=20, what="callhub demo to show a live call", interval=0.05)
    except BaseException:
        demo.stop()
        raise
    return demo


@dataclass
class LiveHub:
    """A hub app served by uvicorn inside the test's event loop (inspectable)."""

    url: str
    app: Starlette

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
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
