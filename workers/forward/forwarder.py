"""Forwarder: the ``callhub forward`` process — subscriptions in, leases held, deliveries run.

About once a second it re-reads the subscriptions and, for every enabled one
and every shard, tries to take the lease nobody holds; each lease it gets
runs a ``ShardDelivery``. Any number of forwarders run side by side: the
leases share the (subscription, shard) pairs out, and a dead forwarder's
pairs are picked up within a lease and a second. A subscription edited
reaches its running deliveries at once; one disabled or deleted stops them
(cursor stored, lease released), and one rewound (``/redeliver`` from a
cursor) restarts them, so that each begins again from the rewind.

``stop`` (SIGTERM, SIGINT) stops the reading, gives requests in flight a
few seconds, stores the cursors and releases the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from redis.exceptions import RedisError

from callhub.connections import RedisClient
from callhub.settings import Settings
from workers.forward.destination import IN_FLIGHT, Destination
from workers.forward.journal import DeliveryJournal
from workers.forward.lease import ShardLease
from workers.forward.metrics import ForwardMetrics
from workers.forward.retry_policy import RETRY_BASE_S, RETRY_CAP_S, RetryPolicy
from workers.forward.sender import WebhookSender
from workers.forward.shard_delivery import MAX_HELD, ShardDelivery
from workers.forward.subscriptions import StoredSubscription, read_subscriptions

log = logging.getLogger("callhub.forward")

REFRESH_S = 1.0
STOP_GRACE_S = 3.0


class Forwarder:
    def __init__(
        self, redis: RedisClient, settings: Settings, *, metrics: ForwardMetrics | None = None,
        retry_base_s: float = RETRY_BASE_S, retry_cap_s: float = RETRY_CAP_S,
        max_held: int = MAX_HELD, in_flight: int = IN_FLIGHT, refresh_s: float = REFRESH_S,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._keys = settings.keyspace
        self.metrics = metrics or ForwardMetrics()
        self.holder = secrets.token_hex(8)
        self._policy = RetryPolicy(settings.webhook_retry_window_ms, base_s=retry_base_s,
                                   cap_s=retry_cap_s)
        self._sender = WebhookSender(settings.webhook_timeout_ms / 1000,
                                     allow_private=settings.webhook_allow_private)
        self._journal = DeliveryJournal(redis, self._keys)
        self._max_held = max_held
        self._in_flight = in_flight
        self._refresh_s = refresh_s
        self._stop_grace_s = stop_grace_s
        self._stored: dict[str, StoredSubscription] = {}
        self._destinations: dict[str, Destination] = {}
        self._deliveries: dict[tuple[str, int], tuple[ShardDelivery, asyncio.Task[None]]] = {}
        self._stopped = asyncio.Event()
        self._retired_delivered = 0
        self._retired_dead = 0

    # -- what a status line shows ------------------------------------------------

    @property
    def held(self) -> int:
        return len(self._deliveries)

    @property
    def delivered(self) -> int:
        return self._retired_delivered + sum(d.delivered for d, _ in self._deliveries.values())

    @property
    def dead_letters(self) -> int:
        return self._retired_dead + sum(d.dead_letters for d, _ in self._deliveries.values())

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    # -- running -----------------------------------------------------------------

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        log.info("forwarder %s started", self.holder)
        try:
            while not self._stopped.is_set():
                try:
                    await self.refresh()
                except (RedisError, OSError) as error:
                    log.warning("reading the webhook subscriptions failed, retrying: %s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self._refresh_s)
        finally:
            for delivery, _ in self._deliveries.values():
                delivery.stop()
            tasks = [task for _, task in self._deliveries.values()]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._sender.aclose()
            log.info("forwarder %s stopped", self.holder)

    async def refresh(self) -> None:
        """One round: the subscriptions re-read, deliveries stopped, updated, started."""
        stored = await read_subscriptions(self._redis, self._keys)
        for (sid, _), (delivery, _) in list(self._deliveries.items()):
            current = stored.get(sid)
            if current is None or not current.subscription.enabled:
                delivery.stop()
        for sid, current in stored.items():
            destination = self._destinations.get(sid)
            if destination is not None and self._stored[sid].raw != current.raw:
                if current.subscription.rewind != self._stored[sid].subscription.rewind:
                    self._stop_deliveries(sid)  # restarted next round, from the rewind
                destination.subscription = current.subscription
                destination.disabled = not current.subscription.enabled
        self._stored = stored
        for sid in list(self._destinations):
            if sid not in stored and not any(key[0] == sid for key in self._deliveries):
                del self._destinations[sid]
        for sid, current in stored.items():
            if not current.subscription.enabled or self._stopped.is_set():
                continue
            for shard in range(self._settings.shards):
                if (sid, shard) not in self._deliveries:
                    await self._try_start(current, shard)

    def _stop_deliveries(self, sid: str) -> None:
        for (delivering, _), (delivery, _) in self._deliveries.items():
            if delivering == sid:
                delivery.stop()

    async def _try_start(self, current: StoredSubscription, shard: int) -> None:
        sid = current.subscription.id
        lease = ShardLease(self._redis, self._keys, sid, shard, self.holder,
                           self._settings.forward_lease_ms)
        if not await lease.acquire():
            return
        destination = self._destinations.get(sid)
        if destination is None or destination.disabled:
            destination = Destination(current.subscription, in_flight=self._in_flight)
            self._destinations[sid] = destination
        delivery = ShardDelivery(
            self._redis, self._settings, destination, shard, lease, sender=self._sender,
            journal=self._journal, policy=self._policy, metrics=self.metrics,
            max_held=self._max_held, stop_grace_s=self._stop_grace_s)
        task = asyncio.create_task(delivery.run())
        self._deliveries[(sid, shard)] = (delivery, task)
        self.metrics.held.set(len(self._deliveries))
        log.info("delivering webhook %s, shard %d", sid, shard)
        task.add_done_callback(lambda _: self._ended(sid, shard, delivery))

    def _ended(self, sid: str, shard: int, delivery: ShardDelivery) -> None:
        if self._deliveries.get((sid, shard), (None,))[0] is delivery:
            del self._deliveries[(sid, shard)]
        self._retired_delivered += delivery.delivered
        self._retired_dead += delivery.dead_letters
        self.metrics.held.set(len(self._deliveries))
