"""Destination: what one subscription's deliveries share inside a forwarder.

A forwarder may hold several shards of one subscription; they share its
current stored value (an edit reaches every shard at once), the bound on
POSTs in flight to it, and when it last accepted one (a subscription is
disabled only when it failed for a whole retry window, not when one call's
event did while others got through), and its signing keys, decoded once a
second rather than once a POST.
"""

from __future__ import annotations

import asyncio

from callhub.webhooks import Subscription

# A forwarder's rate to one subscription is at most IN_FLIGHT / the receiver's
# answer time: 64 capped it near 2,000/s where answers took 30 ms (bench/forward.py
# on a loaded machine), below the 5,000/s a forwarder is meant to reach. The
# calls waiting bound it as well (one request per call at a time).
IN_FLIGHT = 256


class Destination:
    def __init__(self, subscription: Subscription, *, in_flight: int = IN_FLIGHT) -> None:
        self.subscription = subscription
        self.gate = asyncio.Semaphore(in_flight)
        self.last_delivered_ms = 0
        self.disabled = False
        self.in_flight = 0  # POSTs awaiting an answer (the in-flight gauge reads it)
        self._keys: list[bytes] = []
        self._keys_for: tuple[Subscription, int] | None = None

    def signing_keys(self, now_s: int) -> list[bytes]:
        """The keys that sign at ``now_s`` (the subscription's, as it is now)."""
        if self._keys_for is None or self._keys_for[0] is not self.subscription or \
                self._keys_for[1] != now_s:
            self._keys = self.subscription.signing_keys(now_s * 1000)
            self._keys_for = (self.subscription, now_s)
        return self._keys

    @property
    def id(self) -> str:
        return self.subscription.id
