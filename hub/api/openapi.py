"""The OpenAPI document, generated from the same msgspec Structs the code uses.

Only the paths and parameters are written here; every schema comes from
``msgspec.json.schema_components`` over the real response and event types, so
the document cannot drift from what the API sends.

The event stream is ``text/event-stream``. OpenAPI 3.1 has no way to describe
the items of a stream (3.2's ``itemSchema``), so, as tools read 3.1 documents,
its ``schema`` describes one event of the stream: ``data`` is JSON, one
``CallEvent`` (or the ``StreamReset`` control event).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from callhub.call_views import CallView, ListCallsPage
from callhub.events import DIALOG_NAME_PATTERN, EVENT_TYPES, SESSION_ID_PATTERN, AnyEvent
from hub.api.call_records_openapi import RECORD_SCHEMAS, record_paths
from hub.api.calls import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PHONE_NUMBER_MAX
from hub.api.event_schemas import PATH as EVENT_SCHEMAS_PATH
from hub.api.event_schemas import schema_paths
from hub.api.responses import json_response
from hub.api.webhook_schemas import (
    CreateWebhook,
    DeadLetterList,
    DeliveryList,
    PingResult,
    Redeliver,
    RedeliverResult,
    UpdateWebhook,
    Webhook,
    WebhookList,
    WebhookWithSecret,
)
from hub.api.webhooks import PAGE_SIZE_DEFAULT as WEBHOOKS_PAGE_DEFAULT
from hub.api.webhooks import PAGE_SIZE_MAX as WEBHOOKS_PAGE_MAX
from hub.api.webhooks import RECORDS_DEFAULT, RECORDS_MAX
from hub.errors import ErrorBody
from hub.store.call_store import LIST_STATUSES
from hub.stream.frames import RETRY_MS, StreamReset, wire_name

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Invalid parameter", 401: "Missing or invalid API key",
            403: "The API key may not do this", 404: "Not found", 500: "Server error",
            429: "Too many open event streams for this key or client (Retry-After)",
            503: "Event store unreachable"}
    return {str(s): _json(_ref("ErrorBody"), text[s]) for s in statuses}


def _param(name: str, description: str, schema: dict[str, Any],
           where: str = "query", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


@cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (CallView, ListCallsPage, ErrorBody, AnyEvent, StreamReset, CreateWebhook,
         UpdateWebhook, Webhook, WebhookWithSecret, WebhookList, DeliveryList, DeadLetterList,
         Redeliver, RedeliverResult,
         PingResult, *RECORD_SCHEMAS), ref_template=_REF
    )
    components["CallEvent"] = {
        "oneOf": [_ref(cls.__name__) for cls in AnyEvent.__args__],
        "discriminator": {"propertyName": "type"},
    }
    # Empty means "all dialogs" (or calls, or types), as the spec says.
    dialog = {"type": "string", "pattern": f"^({DIALOG_NAME_PATTERN.pattern})?$"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "callhub: Call Event Stream API", "version": "1"},
        "externalDocs": {"description": "The call events as JSON Schema (2020-12)",
                         "url": EVENT_SCHEMAS_PATH},
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
        },
        "security": [{"bearer": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}, {}],
        "paths": {
            "/v1/calls": {"get": _list_calls(dialog)},
            "/v1/calls/events": {"get": _event_stream(dialog)},
            "/v1/calls/{id}": {
                "get": {
                    "operationId": "getCall",
                    "summary": "Get a specific call's status",
                    "parameters": [_param("id", "Call session ID", {"type": "string"},
                                          where="path", required=True)],
                    "responses": {"200": _json(_ref("CallView"), "The call"),
                                  **_errors(400, 401, 404, 500, 503)},
                }
            },
            **record_paths(),
            **schema_paths(),
            **_webhook_paths(),
            "/healthz": {"get": {"operationId": "healthz", "security": [],
                                 "responses": {"200": {"description": "The process is up"}}}},
            "/readyz": {"get": {"operationId": "readyz", "security": [],
                                "responses": {"200": {"description": "Redis is reachable"},
                                              **_errors(503)}}},
        },
    }


def _list_calls(dialog: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/calls``: the spec's List active calls, and the ended ones."""
    moment = {"type": "string", "format": "date-time", "example": "2025-06-14T18:30:00Z"}
    return {
        "operationId": "listCalls",
        "summary": "List active calls (the default), ended calls, or both",
        "parameters": [
            _param("status", "active (the default: the spec's List active calls, oldest "
                   "first), terminated (ended calls within the call retention, newest "
                   "first) or all (the active calls, then the ended ones)",
                   {"type": "string", "enum": list(LIST_STATUSES), "default": "active"}),
            _param("dialog_name", "Filter by dialog name", dialog),
            _param("caller_id", "Ended calls of exactly this caller id (with status "
                   "terminated)", {"type": "string", "minLength": 1,
                                   "maxLength": PHONE_NUMBER_MAX, "pattern": "^[^\\r\\n]*$"}),
            _param("ended_after", "Ended calls that ended at or after this time (ISO 8601 "
                   "with a zone; with status terminated or all)", moment),
            _param("ended_before", "Ended calls that ended before this time (ISO 8601 with "
                   "a zone; with status terminated or all)", moment),
            _param("page_size", "Maximum number of results",
                   {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX,
                    "default": PAGE_SIZE_DEFAULT}),
            _param("page_token", "Token from a previous page of the same listing (the "
                   "same filters)", {"type": "string"}),
        ],
        "responses": {"200": _json(_ref("ListCallsPage"), "A page of calls"),
                      **_errors(400, 401, 500, 503)},
    }


def _event_stream(dialog: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/calls/events``: its parameters, and one event of the stream."""
    one_type = "|".join(EVENT_TYPES)
    types = {"type": "string",
             "pattern": rf"^\s*({one_type})?\s*(,\s*({one_type})?\s*)*$"}
    session = {"type": "string", "pattern": f"^({SESSION_ID_PATTERN.pattern})?$"}
    event = {
        "type": "object",
        "description": (
            "One Server-Sent Event of the stream (the stream's items; it never ends by "
            "itself). An event frame has `id` (the cursor after it, opaque), `event` (its "
            f"type) and `data` (its JSON). The stream starts with `retry: {RETRY_MS}`; idle "
            "streams get a `: ping` comment with an `id`-only frame. History frames "
            "(`include_history`) carry no `id`; an `id`-only frame marks the seam to live "
            "events. A cursor older than the retention window gets one `stream_reset` "
            "event first."),
        "properties": {
            "id": {"type": "string", "description": "Cursor: resume after this event "
                   "with Last-Event-ID or last_event_id"},
            "event": {"type": "string", "description": "The event's type, except that "
                      "`error` events are sent as `call_error` (an EventSource hands an event "
                      "named `error` to its connection-error handlers); `data.type` and "
                      "`event_types` say `error`",
                      "enum": [*(wire_name(t.encode()).decode() for t in EVENT_TYPES),
                               "stream_reset"]},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"oneOf": [_ref("CallEvent"), _ref("StreamReset")]}},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "operationId": "subscribeCallEvents",
        "summary": "Subscribe to call events (Server-Sent Events)",
        "parameters": [
            _param("event_types", "Comma-separated event types (empty = all)", types),
            _param("session_id", "Only this call's events (empty = all calls)", session),
            _param("dialog_name", "Only this dialog's calls' events (empty = all)", dialog),
            _param("include_history", "Replay the stored events of the matching active "
                   "calls first, then go on live", {"type": "boolean", "default": False}),
            _param("last_event_id", "Resume after this cursor (as Last-Event-ID)",
                   {"type": "string"}),
            _param("Last-Event-ID", "Resume after this cursor (browsers send it when "
                   "they reconnect); wins over last_event_id", {"type": "string"},
                   where="header"),
        ],
        "responses": {
            "200": {"description": "The event stream",
                    "content": {"text/event-stream": {"schema": event}}},
            **_errors(400, 401, 429, 500, 503),
        },
    }


def _webhook_paths() -> dict[str, Any]:
    """``/v1/webhooks``: managing subscriptions (a key with ``webhooks = true``)."""
    webhook_id = _param("id", "Webhook subscription ID (wh_...)", {"type": "string"},
                        where="path", required=True)
    errors = (400, 401, 403, 404, 500, 503)

    def operation(operation_id: str, summary: str, responses: dict[str, Any],
                  body: str | None = None, parameters: tuple[dict[str, Any], ...] = (),
                  with_id: bool = True) -> dict[str, Any]:
        described: dict[str, Any] = {
            "operationId": operation_id, "summary": summary,
            "parameters": [*([webhook_id] if with_id else []), *parameters],
            "responses": {**responses, **_errors(*errors)},
        }
        if body is not None:
            described["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _ref(body)}}}
        return described

    limit = _param("limit", "Maximum number of records (newest first)",
                   {"type": "integer", "minimum": 1, "maximum": RECORDS_MAX,
                    "default": RECORDS_DEFAULT})
    return {
        "/v1/webhooks": {
            "get": operation("listWebhooks", "List webhook subscriptions", {
                "200": _json(_ref("WebhookList"), "The subscriptions this key sees")},
                parameters=(
                    _param("page_size", "Maximum number of results",
                           {"type": "integer", "minimum": 1, "maximum": WEBHOOKS_PAGE_MAX,
                            "default": WEBHOOKS_PAGE_DEFAULT}),
                    _param("page_token", "Token from a previous page", {"type": "string"})),
                with_id=False),
            "post": operation("createWebhook", "Create a webhook subscription", {
                "201": _json(_ref("WebhookWithSecret"),
                             "The subscription, and its signing secret (shown only here)")},
                body="CreateWebhook", with_id=False),
        },
        "/v1/webhooks/{id}": {
            "get": operation("getWebhook", "Get a webhook subscription", {
                "200": _json(_ref("Webhook"), "The subscription")}),
            "patch": operation("updateWebhook", "Change a webhook subscription", {
                "200": _json(_ref("Webhook"), "The changed subscription")},
                body="UpdateWebhook"),
            "delete": operation("deleteWebhook", "Delete a webhook subscription", {
                "204": {"description": "Deleted"}}),
        },
        "/v1/webhooks/{id}/rotate-secret": {
            "post": operation("rotateWebhookSecret", "Rotate the signing secret (the "
                              "previous one keeps signing during the grace period)", {
                "200": _json(_ref("WebhookWithSecret"), "The new signing secret")}),
        },
        "/v1/webhooks/{id}/test": {
            "post": operation("testWebhook", "Send a signed webhook_test event to the URL", {
                "200": _json(_ref("PingResult"), "How the receiver answered")}),
        },
        "/v1/webhooks/{id}/deliveries": {
            "get": operation("listWebhookDeliveries", "The last delivery attempts", {
                "200": _json(_ref("DeliveryList"), "Delivery attempts, newest first")},
                parameters=(limit,)),
        },
        "/v1/webhooks/{id}/dead-letters": {
            "get": operation("listWebhookDeadLetters", "Events given up on", {
                "200": _json(_ref("DeadLetterList"), "Dead letters, newest first")},
                parameters=(limit,)),
        },
        "/v1/webhooks/{id}/redeliver": {
            "post": operation("redeliverWebhook", "Send dead letters again, or every event "
                              "after a cursor", {
                "202": _json(_ref("RedeliverResult"), "Under way: the forwarders act on it "
                             "within about a second")},
                body="Redeliver"),
        },
    }
