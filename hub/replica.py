"""Hub: what one running replica holds, handed to request handlers.

Built by the app's lifespan (connections open there and close there), never at
import time, so every app and every test owns its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from hub.auth import ApiKeys
from hub.calls import CallStore
from hub.dispatcher import Dispatcher
from hub.redis_connection import RedisClient
from hub.settings import Settings


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
