"""The API replica: a Starlette app built by a factory from the settings.

No module-level connections: the lifespan opens the Redis pool and closes it,
so every app (and every test) owns its own. A replica never writes call data,
so any replica can serve any request.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import access_log
from hub.auth import ApiKeys
from hub.calls import CallStore, decode_page_token
from hub.errors import REDIS_ERRORS, ApiError, BadParameter, error_response, json_error
from hub.events import check_dialog_name, check_session_id
from hub.openapi import openapi_document
from hub.query import Query
from hub.redis_connection import connect
from hub.settings import Settings, load_settings

log = logging.getLogger("callhub.hub")
_encoder = msgspec.json.Encoder()

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000


@dataclass
class Hub:
    """What a running replica holds: passed to handlers through ``app.state``."""

    settings: Settings
    keys: ApiKeys
    redis: aioredis.Redis
    store: CallStore


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(_encoder.encode(content), status_code=status_code,
                    media_type="application/json")


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def get_call(request: Request) -> Response:
    hub = hub_of(request)
    principal = hub.keys.authenticate(request)
    Query(request.query_params, ())
    session_id = request.path_params["id"]
    try:
        check_session_id(session_id)
    except ValueError as error:
        raise BadParameter(str(error), param="id") from None
    return json_response(await hub.store.get_call(session_id, principal.scope))


async def list_calls(request: Request) -> Response:
    hub = hub_of(request)
    principal = hub.keys.authenticate(request)
    query = Query(request.query_params, ("dialog_name", "page_size", "page_token"))
    dialog = query.text("dialog_name", check=check_dialog_name)
    page_size = query.integer("page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    token = query.text("page_token")
    after = decode_page_token(token, dialog) if token else None
    page = await hub.store.list_calls(dialog, page_size, after, principal.scope)
    return json_response(page)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await hub_of(request).redis.ping()
    except REDIS_ERRORS:
        return json_error(503, "unavailable", "the event store is unreachable",
                          headers={"Retry-After": "2"})
    return json_response({"status": "ready"})


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_error(exc.status_code, code, str(exc.detail), headers=exc.headers)


def create_app(settings: Settings) -> Starlette:
    keys = ApiKeys.load(settings.api_keys, settings.api_keys_file)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not keys.enabled:
            log.warning("no API keys are configured: the API is open to anyone who can reach it")
        client = connect(settings)
        app.state.hub = Hub(settings, keys, client, CallStore(client, settings.keyspace))
        try:
            yield
        finally:
            await client.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
        Route("/v1/calls", list_calls),
        Route("/v1/calls/{id}", get_call),
    ]
    return Starlette(
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
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    access_log.install()
    return create_app(load_settings(os.environ))
