"""Redis clients built from the settings, and a safe way to name a server.

Clients return bytes (no decoding): event JSON passes through untouched and
routing fields are decoded only where they are used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis

from hub.settings import Settings


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


def describe(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials (safe to log)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or ''}"
