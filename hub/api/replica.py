"""Replica: what one running API replica holds, handed to every request handler.

Built by the app's lifespan (connections open there and close there), never at
import time, so every app and every test owns its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from callhub.connections import RedisClient
from callhub.settings import Settings
from hub.api.auth import ApiKeys
from hub.api.stream_quota import StreamQuota
from hub.store.call_records import CallRecords
from hub.store.call_store import CallStore
from hub.store.subscriptions import SubscriptionStore
from hub.stream.dispatcher import Dispatcher
from hub.stream.engine import StreamOptions


@dataclass
class Replica:
    settings: Settings
    keys: ApiKeys
    redis: RedisClient
    store: CallStore
    dispatcher: Dispatcher
    stream_options: StreamOptions
    subscriptions: SubscriptionStore
    records: CallRecords = field(init=False)  # calls' own event streams
    stream_quota: StreamQuota = field(init=False)  # open streams per key and client

    def __post_init__(self) -> None:
        self.records = CallRecords(self.redis, self.settings.keyspace)
        self.stream_quota = StreamQuota(self.settings.max_streams_per_key,
                                        self.settings.max_streams_per_client,
                                        self.settings.trusted_proxies)


def replica_of(request: Request) -> Replica:
    replica: Replica = request.app.state.replica
    return replica
