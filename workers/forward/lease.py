"""ShardLease: one forwarder at a time delivers a (subscription, shard).

The lease is a string key holding the forwarder's random id, set NX with a
time to live and renewed while it delivers; the cursor beside it (same
``{s}`` slot) moves only in the same script that checks the lease, so a
forwarder that lost its lease (paused past it, partitioned) can never move
the cursor its successor owns. A dead forwarder stops renewing and its lease
runs out; whoever acquires it next re-sends only what was in flight.

``ForwarderRoster`` is how forwarders share the leases out: each one beats a
few times a second (its id in one sorted set, scored with the Redis clock's
time it expires at; the beat also drops the entries that expired), and takes
at most its share of the pairs (``fair_share``). A dead forwarder stops
beating as it stops renewing, so both its leases and its place in the roster
run out within the lease time, and the others' shares grow to take its pairs.
"""

from __future__ import annotations

import math
from typing import Final

from callhub.connections import RedisClient
from callhub.keyspace import Keyspace

# KEYS: lease, cursor. ARGV: holder, lease ms, cursor ("" leaves it).
RENEW: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end
return 1
"""
# KEYS: lease, cursor. ARGV: holder, cursor ("" leaves it).
RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('DEL', KEYS[1])
return 1
"""


# KEYS: roster. ARGV: holder, time to live ms. The Redis clock, not the
# forwarders' (they may run on hosts whose clocks differ).
BEAT: Final = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


def fair_share(pairs: int, forwarders: int) -> int:
    """The most (subscription, shard) pairs of ``pairs`` one of ``forwarders``
    live forwarders takes: every pair has a taker, none takes much more."""
    return math.ceil(pairs / max(forwarders, 1))


class ForwarderRoster:
    """The live forwarders, as one of them sees them."""

    def __init__(self, redis: RedisClient, keyspace: Keyspace, holder: str,
                 ttl_ms: int) -> None:
        self._redis = redis
        self._key = keyspace.webhook_forwarders()
        self.holder = holder
        self.ttl_ms = ttl_ms
        self._beat = redis.register_script(BEAT)
        self.live = 1  # as of the last beat (itself at least)

    async def beat(self) -> int:
        """Say this forwarder is alive for ``ttl_ms`` more; the number now alive."""
        self.live = max(1, int(await self._beat(keys=[self._key],
                                                 args=[self.holder, self.ttl_ms])))
        return self.live

    async def leave(self) -> None:
        await self._redis.zrem(self._key, self.holder)


class ShardLease:
    """The lease on one (subscription, shard), for one holder id."""

    def __init__(self, redis: RedisClient, keyspace: Keyspace, subscription_id: str,
                 shard: int, holder: str, lease_ms: int) -> None:
        self._redis = redis
        self.lease_key = keyspace.webhook_lease(shard, subscription_id)
        self.cursor_key = keyspace.webhook_cursor(shard, subscription_id)
        self.rewound_key = keyspace.webhook_rewound(shard, subscription_id)
        self.holder = holder
        self.lease_ms = lease_ms
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(await self._redis.set(self.lease_key, self.holder, nx=True,
                                          px=self.lease_ms))

    async def renew(self, cursor: str = "") -> bool:
        """Extend the lease and (if given) store the cursor; False: it is not ours."""
        return bool(await self._renew(keys=[self.lease_key, self.cursor_key],
                                      args=[self.holder, self.lease_ms, cursor]))

    async def release(self, cursor: str = "") -> bool:
        """Store the cursor (if given) and give the lease up, if it is still ours."""
        return bool(await self._release(keys=[self.lease_key, self.cursor_key],
                                        args=[self.holder, cursor]))

    async def stored_cursor(self) -> bytes | None:
        value: bytes | None = await self._redis.get(self.cursor_key)  # type: ignore[assignment]
        return value

    async def rewound(self) -> int:
        """The generation of the last ``/redeliver`` rewind applied to this shard."""
        value: bytes | None = await self._redis.get(self.rewound_key)  # type: ignore[assignment]
        return int(value) if value is not None and value.isdigit() else 0

    async def mark_rewound(self, generation: int) -> None:
        """Stored after the rewound cursor: a stop between the two applies the
        rewind again (duplicates, never a loss)."""
        await self._redis.set(self.rewound_key, generation)
