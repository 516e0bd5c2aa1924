"""Real redis-servers for the tests: one server, or a Redis Cluster, started on
loopback and owned by the test session; and clients for whichever engine a
test's ``Settings`` name.

The session fixtures start them once per test session; a test that
needs a server of its own (a replica, one it kills) calls these directly.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from callhub.connections import RedisClient
from callhub.settings import Settings
from tests.support.polling import wait_until
from tests.support.processes import free_port, stop_process

# Options that keep every acknowledged write across a restart: the AOF, each
# write fsynced before its reply (a clean shutdown would keep them anyway).
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass
class RedisServer:
    """A redis-server process this test session started and owns."""

    port: int
    process: subprocess.Popen[bytes]
    directory: str
    args: tuple[str, ...] = ()  # the options it was started with, beyond the defaults

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        """Start this stopped server again: its port, its options and its
        directory (so its AOF or RDB), once it answers PING."""
        again = start_redis_server(self.port, *self.args, "--dir", self.directory)
        shutil.rmtree(again.directory, ignore_errors=True)  # the fresh one it made, unused
        self.process = again.process


def start_redis_server(port: int | None = None, *extra: str) -> RedisServer:
    """redis-server on 127.0.0.1 (a free port unless given), without persistence
    unless ``extra`` asks for it; returned once it answers PING."""
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
    server = RedisServer(port, process, directory, tuple(extra))
    client = server.client()
    try:
        wait_until(client.ping, what=f"redis-server on port {port}")
    except AssertionError:
        server.stop()
        raise
    finally:
        client.close()
    return server


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
        self.servers[index] = RedisServer(old.port, again.process, old.directory, old.args)
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

        wait_until(ready, timeout=30, what="the Redis Cluster to be ready", interval=0.1)
    except BaseException:
        RedisClusterNodes(servers, node_args).stop()
        raise
    return RedisClusterNodes(servers, node_args)


def engine_env(settings: Settings) -> dict[str, str]:
    """The environment that points a ``callhub`` process at ``settings``' engine."""
    return {"CALLHUB_REDIS_CLUSTER": "true"} if settings.redis_cluster else {}


def sync_client(settings: Settings) -> redis.Redis | RedisCluster:
    """A blocking client for ``settings``' Redis: to set up and check state."""
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url)
    return redis.Redis.from_url(settings.redis_url)


def async_client(settings: Settings) -> RedisClient:
    """An asyncio client for ``settings``' Redis (a cluster client on a cluster)."""
    if settings.redis_cluster:
        return AsyncRedisCluster.from_url(settings.redis_url)
    return aioredis.Redis.from_url(settings.redis_url)
