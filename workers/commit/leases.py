"""LeaseKeeper: keeps a worker's leases alive while its calls are quiet (DESIGN I7).

Every commit renews its call's lease, but a call can be quiet for longer than
a lease (a caller thinking, a long TTS prompt, a call on hold). The keeper
renews the leases of every call the worker holds, every third of a lease, in
one script call per shard. When the worker dies the renewals stop, the leases
run out, and any worker's reaper ends those calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from importlib import resources
from typing import Final

from redis.exceptions import RedisError

from callhub.connections import RedisClient
from callhub.keyspace import Keyspace

log = logging.getLogger("callhub.leases")

RENEW_SCRIPT: Final = resources.files("workers.commit").joinpath("renew_leases.lua").read_text()


class LeaseKeeper:
    """The set of calls one worker holds, and the loop that renews their leases."""

    def __init__(self, redis: RedisClient, keyspace: Keyspace, lease_ms: int) -> None:
        self._redis = redis
        self._keys = keyspace
        self._lease_ms = lease_ms
        self._script = redis.register_script(RENEW_SCRIPT)
        self._held: set[str] = set()
        self._loaded = False
        self._stopped = asyncio.Event()

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def hold(self, session_id: str) -> None:
        """Start renewing a call's lease (its ``call_started`` sets the first one)."""
        self._held.add(session_id)

    def release(self, session_id: str) -> None:
        """Stop renewing: the call ended, or the worker gave it up."""
        self._held.discard(session_id)

    async def renew(self) -> int:
        """Renew every held call's lease now; the number of leases extended."""
        by_shard: dict[int, list[str]] = defaultdict(list)
        for session_id in self._held:
            by_shard[self._keys.shard_of(session_id)].append(session_id)
        if by_shard and not self._loaded:
            # Load before the first EVALSHA instead of answering NOSCRIPT: an
            # error reply makes fakeredis's TCP server (the demo) drop the
            # connection, and on Redis it costs a round trip anyway.
            await self._redis.script_load(RENEW_SCRIPT)
            self._loaded = True
        renewed = 0
        for shard, session_ids in by_shard.items():
            result = await self._script(keys=[self._keys.leases(shard)],
                                        args=[self._lease_ms, *session_ids])
            renewed += int(result)
        return renewed

    async def run(self) -> None:
        """Renew every third of a lease until ``stop``; Redis errors are retried."""
        interval = self._lease_ms / 3000
        while not self._stopped.is_set():
            try:
                await self.renew()
            except RedisError as error:
                log.warning("lease renewal failed, retrying: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), interval)

    def stop(self) -> None:
        self._stopped.set()

