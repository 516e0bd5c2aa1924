"""Redis clients built from the settings, and a safe way to name a server.

Clients return bytes (no decoding): event JSON passes through untouched and
routing fields are decoded only where they are used.
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException as RedisClusterError

from callhub.settings import Settings

# What callhub's Redis code accepts: a single node's client or a cluster's.
# Every key of a command or script is in one shard's hash slot, so the same
# commands run on both; the cluster client routes them and follows moves.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster


def connect(settings: Settings, *, max_connections: int | None = None) -> aioredis.Redis:
    """A pooled client for request/response commands (never for blocking reads)."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        max_connections=max_connections,
    )


def connect_client(settings: Settings, *, max_connections: int | None = None) -> RedisClient:
    """``connect``, or a cluster client when ``settings.redis_cluster`` says so."""
    if not settings.redis_cluster:
        return connect(settings, max_connections=max_connections)
    return RedisCluster.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        max_connections=max_connections or 2**31,
    )


async def server_time_ms(client: RedisClient, key: str) -> int:
    """The Redis clock (ms) of the node that holds ``key``: leases are on that clock."""
    if isinstance(client, RedisCluster):
        await client.initialize()  # the slot map; a no-op once it is known
        node = client.get_node_from_key(key)
        seconds, micros = await client.execute_command("TIME", target_nodes=node)
    else:
        seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def node_url_for(settings: Settings, cluster: RedisCluster, key: str) -> str:
    """The URL of the cluster node that serves ``key`` now, with the settings URL's
    scheme, credentials and database.

    The slot map is asked afresh of every node ``cluster`` has discovered, not
    of the node the URL names: that one may be the master that just failed.
    """
    await cluster.initialize()  # the first map; a no-op once it is known
    await cluster.nodes_manager.initialize()  # redis-py has no public refresh
    node = cluster.get_node_from_key(key)
    if node is None:
        raise RedisClusterError(f"no cluster node serves {key}")
    return with_address(settings.redis_url, node.host, int(node.port))


def with_address(url: str, host: str, port: int) -> str:
    """``url`` pointing at ``host:port``: scheme, credentials, database and
    query (TLS options) are kept, as every node of a cluster shares them."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}" if credentials
                                     else address))


def describe(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials (safe to log)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or ''}"
