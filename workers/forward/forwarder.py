"""Forwarder: the ``callhub forward`` process — subscriptions in, leases held, deliveries run.

About once a second it re-reads the subscriptions and, for every enabled one
and every shard, tries to take the lease nobody holds, up to its fair share;
each lease it gets runs a ``ShardDelivery``. Any number of forwarders run
side by side: the roster of live forwarders (``ForwarderRoster``, beaten a
few times a second) says how many share the (subscription, shard) pairs, and
each takes at most ``fair_share`` of a subscription's shards and of all the
pairs; one holding more than that (another forwarder started) hands the
excess over (stops them as on SIGTERM: cursor stored, lease released). A
dead forwarder leaves the roster as its leases run out, and its pairs are
picked up within a lease and a second. A subscription edited
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
from callhub.tokens import use_secret
from workers.forward.destination import IN_FLIGHT, Destination
from workers.forward.journal import DeliveryJournal
from workers.forward.lease import ForwarderRoster, ShardLease, fair_share
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
        if settings.secret:  # the cursors in deliveries are sealed like the hub's
            use_secret(settings.secret, settings.secret_previous)
        self._keys = settings.keyspace
        self.metrics = metrics or ForwardMetrics()
        self.holder = secrets.token_hex(8)
        self._policy = RetryPolicy(settings.webhook_retry_window_ms, base_s=retry_base_s,
                                   cap_s=retry_cap_s)
        self._sender = WebhookSender(settings.webhook_timeout_ms / 1000,
                                     allow_private=settings.webhook_allow_private)
        self._journal = DeliveryJournal(redis, self._keys)
        self._roster = ForwarderRoster(redis, self._keys, self.holder,
                                       settings.forward_lease_ms)
        self._max_held = max_held
        self._in_flight = in_flight
        self._refresh_s = refresh_s
        self._stop_grace_s = stop_grace_s
        self._stored: dict[str, StoredSubscription] = {}
        self._destinations: dict[str, Destination] = {}
        self._deliveries: dict[tuple[str, int], tuple[ShardDelivery, asyncio.Task[None]]] = {}
        self._gone: set[str] = set()  # deleted, with deliveries here still ending
        self._discarding: set[asyncio.Task[None]] = set()
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
        journal = asyncio.create_task(self._journal.run())
        beating = asyncio.create_task(self._beat())
        try:
            with contextlib.suppress(RedisError, OSError):
                await self._roster.beat()
            while not self._stopped.is_set():
                try:
                    await self.refresh()
                except (RedisError, OSError) as error:
                    log.warning("reading the webhook subscriptions failed, retrying: %s", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self._refresh_s)
        finally:
            beating.cancel()
            with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
                await beating
                await self._roster.leave()  # the others' shares grow at once
            for delivery, _ in self._deliveries.values():
                delivery.stop()
            tasks = [task for _, task in self._deliveries.values()]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self._journal.close()
            await asyncio.gather(journal, *self._discarding, return_exceptions=True)
            await self._sender.aclose()
            log.info("forwarder %s stopped", self.holder)

    async def refresh(self) -> None:
        """One round: the subscriptions re-read, deliveries stopped, updated, started."""
        stored = await read_subscriptions(self._redis, self._keys)
        for sid in self._stored.keys() - stored.keys():
            self._deleted(sid)
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
        if self._stopped.is_set():
            return
        enabled = [c for c in stored.values() if c.subscription.enabled]
        shards = self._settings.shards
        per_subscription = fair_share(shards, self._roster.live)
        overall = fair_share(len(enabled) * shards, self._roster.live)
        held = self._hand_over(per_subscription, overall)
        for current in enabled:
            sid = current.subscription.id
            for shard in range(shards):
                if sum(held.values()) >= overall:
                    return
                if held.get(sid, 0) < per_subscription and (sid, shard) not in self._deliveries \
                        and await self._try_start(current, shard):
                    held[sid] = held.get(sid, 0) + 1

    def _hand_over(self, per_subscription: int, overall: int) -> dict[str, int]:
        """Stop the deliveries beyond this forwarder's share (the highest shards
        first); what it goes on holding, per subscription."""
        running: dict[str, list[int]] = {}
        for (sid, shard), (delivery, _) in sorted(self._deliveries.items()):
            if not delivery.stopping:
                running.setdefault(sid, []).append(shard)
        kept = {sid: held[:per_subscription] for sid, held in running.items()}
        for _ in range(sum(len(held) for held in kept.values()) - overall):
            max(kept.values(), key=len).pop()
        for sid, held in running.items():
            for shard in held[len(kept[sid]):]:
                log.info("webhook %s, shard %d: handed over (%d forwarders share the "
                         "leases)", sid, shard, self._roster.live)
                self._deliveries[(sid, shard)][0].stop()
        return {sid: len(held) for sid, held in kept.items()}

    async def _beat(self) -> None:
        """Stay in the roster, a few times a lease (as the leases are renewed)."""
        interval = min(0.25, self._settings.forward_lease_ms / 3000)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._roster.beat()
            except (RedisError, OSError) as error:
                log.warning("beating in the forwarders' roster failed: %s", error)

    def _deleted(self, sid: str) -> None:
        """A subscription deleted through the API: its deliveries here stop (next
        in ``refresh``), nothing more of it is recorded, and once the last of its
        POSTs here ended, the streams one of them may have written again go."""
        if any(key[0] == sid for key in self._deliveries):
            log.info("webhook subscription %s was deleted; its deliveries stop", sid)
        self._journal.forget(sid)
        self._gone.add(sid)
        self._discard_if_done(sid)

    def _discard_if_done(self, sid: str) -> None:
        if sid not in self._gone or any(key[0] == sid for key in self._deliveries):
            return
        self._gone.discard(sid)
        task = asyncio.create_task(self._discard(sid))
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _discard(self, sid: str) -> None:
        try:
            await self._journal.discard(sid)
        except (RedisError, OSError) as error:
            log.warning("removing what deleted subscription %s left failed: %s", sid, error)

    def _stop_deliveries(self, sid: str) -> None:
        for (delivering, _), (delivery, _) in self._deliveries.items():
            if delivering == sid:
                delivery.stop()

    async def _try_start(self, current: StoredSubscription, shard: int) -> bool:
        sid = current.subscription.id
        lease = ShardLease(self._redis, self._keys, sid, shard, self.holder,
                           self._settings.forward_lease_ms)
        if not await lease.acquire():
            return False
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
        return True

    def _ended(self, sid: str, shard: int, delivery: ShardDelivery) -> None:
        if self._deliveries.get((sid, shard), (None,))[0] is delivery:
            del self._deliveries[(sid, shard)]
        self._retired_delivered += delivery.delivered
        self._retired_dead += delivery.dead_letters
        self.metrics.held.set(len(self._deliveries))
        if delivery.deleted:
            self._journal.forget(sid)
            self._gone.add(sid)
        self._discard_if_done(sid)
