"""API errors: raised where the problem is found, answered in one place.

Handlers and helpers raise an ``ApiError`` subclass; ``error_response`` (the
app's only exception handler for them) turns it into the JSON body
``{"error": {"code", "message", "param"}}``. Anything else becomes a 500 with
no internals, and a lost Redis a 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("callhub.errors")


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str
    param: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    status = 500
    code = "internal"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadParameter(ApiError):
    """A query parameter, header or path value the API cannot use."""

    status = 400
    code = "invalid_parameter"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="callhub"'}  # noqa: RUF012


class Forbidden(ApiError):
    """A valid key that may not do this (never used where it would reveal
    that something exists outside the key's scope: that is a ``NotFound``)."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class TooManyStreams(ApiError):
    """Over a cap on open event streams (per key, per client address)."""

    status = 429
    code = "too_many_streams"
    headers = {"Retry-After": "5"}  # noqa: RUF012


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"
    headers = {"Retry-After": "2"}  # noqa: RUF012


REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)

_encoder = msgspec.json.Encoder()


def json_error(status: int, code: str, message: str, param: str | None = None,
               headers: Mapping[str, str] | None = None) -> Response:
    body = ErrorBody(ErrorDetail(code=code, message=message, param=param))
    return Response(_encoder.encode(body), status_code=status, headers=headers,
                    media_type="application/json")


async def error_response(request: Request, exc: Exception) -> Response:
    """The one place exceptions become HTTP responses."""
    if isinstance(exc, ApiError):
        return json_error(exc.status, exc.code, exc.message, exc.param, exc.headers)
    if isinstance(exc, REDIS_ERRORS):
        log.warning("redis unavailable during %s %s: %s", request.method, request.url.path,
                    type(exc).__name__)
        return json_error(503, ServiceUnavailable.code, "the event store is unreachable; retry",
                          headers=ServiceUnavailable.headers)
    log.exception("unhandled error during %s %s", request.method, request.url.path)
    return json_error(500, "internal", "internal server error")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no route, a method not allowed) in the same JSON body."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_error(exc.status_code, code, str(exc.detail), headers=exc.headers)
