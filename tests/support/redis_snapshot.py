"""A whole Redis database as a value: to prove an operation wrote nothing."""

from __future__ import annotations

import redis


def snapshot(client: redis.Redis) -> dict[bytes | str, object]:
    """Everything in the database, by key: to prove a rejection wrote nothing."""
    state: dict[bytes | str, object] = {}
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"stream":
            state[key] = client.xrange(key)
        elif kind == b"hash":
            state[key] = client.hgetall(key)
        elif kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            state[key] = client.dump(key)
    return state
