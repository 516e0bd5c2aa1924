"""The API replica: a Starlette app built by a factory from the settings.

No module-level connections: the lifespan opens the Redis pool and closes it,
so every app (and every test) owns its own. A replica never writes call data,
so any replica can serve any request.

The event stream is dispatched ahead of the middleware stack (``HubApp``):
see ``hub.api.event_stream`` for why, and ``hub.api.cors`` for how it keeps the same
CORS policy as every other path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from callhub.connections import connect_client
from callhub.settings import Settings, load_settings, require_secret
from callhub.tokens import use_secret
from hub.api.api_docs import api_docs, api_docs_asset
from hub.api.auth import ApiKeys
from hub.api.call_records import call_events, call_summary, call_transcript
from hub.api.calls import get_call, list_calls
from hub.api.cors import CorsPolicy
from hub.api.dashboard import dashboard
from hub.api.event_schemas import PATH as EVENT_SCHEMAS_PATH
from hub.api.event_schemas import event_schemas
from hub.api.event_stream import PATH as EVENTS_PATH
from hub.api.event_stream import serve_event_stream
from hub.api.host_policy import HostPolicy
from hub.api.log_format import configure_logging, header_of, request_id, request_id_from
from hub.api.openapi import openapi
from hub.api.operations import healthz, metrics, readyz
from hub.api.replica import Replica
from hub.api.request_observer import RequestObserver
from hub.api.security_headers import EVERY_ANSWER
from hub.api.stream_tokens import PATH as STREAM_TOKENS_PATH
from hub.api.stream_tokens import create_stream_token
from hub.api.webhooks import (
    WebhookCollection,
    WebhookResource,
    list_dead_letters,
    list_deliveries,
    ping_webhook,
    redeliver,
    rotate_secret,
)
from hub.errors import REDIS_ERRORS, ApiError, error_response, http_error
from hub.gc_tuning import tune_after_start_up
from hub.metrics import HubMetrics
from hub.store.call_store import CallStore
from hub.store.subscriptions import SubscriptionStore
from hub.stream.dispatcher import Dispatcher
from hub.stream.engine import StreamEngine

log = logging.getLogger("callhub.hub")


class HubApp(Starlette):
    """The Starlette app, with ``GET /v1/calls/events`` served before its middleware.

    A stream lives for hours and writes thousands of times; the middleware
    stack (error handling, CORS, exception mapping, routing) would stay
    suspended around every one of them for nothing. Every other request, and
    every other method on the stream's path (preflight, 405), goes through
    the stack as usual.
    """

    def __init__(self, *, cors: CorsPolicy, hosts: HostPolicy, metrics: HubMetrics,
                 **kwargs: Any) -> None:
        super().__init__(middleware=[Middleware(RequestObserver, metrics=metrics),
                                     *cors.middleware()], **kwargs)
        self.cors = cors
        self.hosts = hosts
        self.state.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.hosts.check(scope)
            except ApiError as refused:  # before anything else reads the request
                response = await error_response(Request(scope), refused)
                response.raw_headers += [*EVERY_ANSWER, (b"cache-control", b"no-store")]
                await response(scope, receive, send)
                return
        if (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                and _route_path(scope) == EVENTS_PATH):
            scope["app"] = self
            rid = request_id_from(header_of(scope, b"x-request-id"))
            request_id.set(rid)  # this task serves only this stream
            await serve_event_stream(self.state.replica, scope, receive, send,
                                     [*self.cors.simple_headers(scope), *EVERY_ANSWER,
                                      (b"x-request-id", rid.encode())])
            return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the ``root_path`` a proxy mounted us at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _events_route(scope: Scope, receive: Receive, send: Send) -> None:
    """The router's endpoint for the stream's path, should a request reach it
    through the stack (``HubApp`` normally serves it first); CORS headers then
    come from the middleware."""
    await serve_event_stream(scope["app"].state.replica, scope, receive, send, [])


# For apps built in-process with keys and no secret: one per process, so two
# such apps (replicas in one test) open each other's cursors.
_PROCESS_SECRET = secrets.token_urlsafe(32)


def create_app(settings: Settings, *, end_streams_on_sigterm: bool = False,
               tune_gc: bool = False) -> HubApp:
    """The replica's app. ``end_streams_on_sigterm`` (set by ``callhub serve``)
    ends every event stream as soon as the process is told to stop, so clients
    reconnect to another replica instead of holding this one open; ``tune_gc``
    (also ``callhub serve``: never in a process that is not only a replica)
    applies ``hub.gc_tuning`` once start-up is done."""
    keys = ApiKeys.load(settings.api_keys, settings.api_keys_file)
    # The environment path (``callhub serve``) refuses keys without a secret
    # (callhub.settings.require_secret); an app built in-process with keys
    # and no secret seals with a random one, good for this process only.
    use_secret(settings.secret or (_PROCESS_SECRET if keys.enabled else None),
               settings.secret_previous)
    hub_metrics = HubMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not keys.enabled:
            log.warning("no API keys are configured: the API is open to anyone who can reach it")
        else:
            log.info("API keys: %s", keys.sources)
        client = connect_client(settings)
        try:
            async with StreamEngine(settings, client, hub_metrics) as engine:
                app.state.replica = Replica(settings, keys, client,
                                        CallStore(client, settings.keyspace),
                                        engine.dispatcher, engine.options,
                                        SubscriptionStore(client, settings.keyspace))
                restore = (_end_streams_on_signal(engine.dispatcher)
                           if end_streams_on_sigterm else None)
                if tune_gc:
                    tune_after_start_up()
                try:
                    yield
                finally:
                    if restore:
                        restore()
        finally:
            await client.aclose()

    routes = [
        Route("/", dashboard),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
        Route(EVENT_SCHEMAS_PATH, event_schemas),
        Route("/docs", api_docs), Route("/docs/{version}/{name}", api_docs_asset),
        Route("/metrics", metrics),
        Route("/v1/calls", list_calls),
        Route(STREAM_TOKENS_PATH, create_stream_token, methods=["POST"]),
        Route(EVENTS_PATH, _events_route, methods=["GET"]),
        Route("/v1/calls/{id}", get_call),
        Route("/v1/calls/{id}/events", call_events),
        Route("/v1/calls/{id}/transcript", call_transcript),
        Route("/v1/calls/{id}/summary", call_summary),
        Route("/v1/webhooks", WebhookCollection),
        Route("/v1/webhooks/{id}", WebhookResource),
        Route("/v1/webhooks/{id}/rotate-secret", rotate_secret, methods=["POST"]),
        Route("/v1/webhooks/{id}/test", ping_webhook, methods=["POST"]),
        Route("/v1/webhooks/{id}/deliveries", list_deliveries, methods=["GET"]),
        Route("/v1/webhooks/{id}/dead-letters", list_dead_letters, methods=["GET"]),
        Route("/v1/webhooks/{id}/redeliver", redeliver, methods=["POST"]),
    ]
    return HubApp(
        cors=CorsPolicy(settings.cors_origins, keys_enabled=keys.enabled),
        hosts=HostPolicy(settings.allowed_hosts, keys_enabled=keys.enabled),
        metrics=hub_metrics,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_error,
            ApiError: error_response,
            **{kind: error_response for kind in REDIS_ERRORS},
            Exception: error_response,  # a 500; Starlette logs it and re-raises
        },
    )


def create_app_from_environment() -> Starlette:
    """The factory ``callhub serve`` hands uvicorn (each worker process builds one)."""
    settings = load_settings(os.environ)
    require_secret(settings)
    configure_logging(settings.log_format)
    return create_app(settings, end_streams_on_sigterm=True, tune_gc=True)


def _end_streams_on_signal(dispatcher: Dispatcher) -> Callable[[], None]:
    """Chain onto uvicorn's SIGTERM/SIGINT handlers: close every stream first.

    uvicorn waits for open responses before it exits, and an event stream
    never finishes by itself; closing the subscribers ends them in one turn of
    the loop. Returns the function that puts the previous handlers back.
    """
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(dispatcher.close_all)
        chained = previous[signal.Signals(signum)]
        if callable(chained):
            chained(signum, frame)

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
