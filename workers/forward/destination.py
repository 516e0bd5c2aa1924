"""Destination: what one subscription's deliveries share inside a forwarder.

A forwarder may hold several shards of one subscription; they share its
current stored value (an edit reaches every shard at once), the bound on
POSTs in flight to it, and when it last accepted one (a subscription is
disabled only when it failed for a whole retry window, not when one call's
event did while others got through).
"""

from __future__ import annotations

import asyncio

from callhub.webhooks import Subscription

IN_FLIGHT = 64


class Destination:
    def __init__(self, subscription: Subscription, *, in_flight: int = IN_FLIGHT) -> None:
        self.subscription = subscription
        self.gate = asyncio.Semaphore(in_flight)
        self.last_delivered_ms = 0
        self.disabled = False

    @property
    def id(self) -> str:
        return self.subscription.id
