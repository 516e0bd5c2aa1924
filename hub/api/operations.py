"""The operator's endpoints: health, readiness and metrics (no key needed: they
say nothing about any call, only whether the replica runs and how much)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hub.api.replica import replica_of
from hub.api.responses import json_response
from hub.errors import REDIS_ERRORS, json_error
from hub.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hub.metrics import HubMetrics


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await replica_of(request).redis.ping()
    except REDIS_ERRORS:
        return json_error(503, "unavailable", "the event store is unreachable",
                          headers={"Retry-After": "2"})
    return json_response({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus text format; counts only."""
    hub_metrics: HubMetrics = request.app.state.metrics
    return Response(hub_metrics.exposition(), media_type=METRICS_CONTENT_TYPE)
