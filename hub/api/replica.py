"""Hub: what one running replica holds, handed to request handlers.

Built by the app's lifespan (connections open there and close there), never at
import time, so every app and every test owns its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from callhub.connections import RedisClient
from callhub.settings import Settings
from hub.api.auth import ApiKeys
from hub.store.call_store import CallStore
from hub.stream.dispatcher import Dispatcher


@dataclass
class StreamOptions:
    """How this replica runs event streams (from the settings)."""

    ping_s: float
    write_timeout_s: float
    buffer_bytes: int


@dataclass
class Hub:
    settings: Settings
    keys: ApiKeys
    redis: RedisClient
    store: CallStore
    dispatcher: Dispatcher
    stream_options: StreamOptions


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub
