"""The OpenAPI document, generated from the same msgspec Structs the code uses.

Only the paths and parameters are written here; every schema comes from
``msgspec.json.schema_components`` over the real response and event types, so
the document cannot drift from what the API sends.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from hub.calls import CallView, ListCallsPage
from hub.errors import ErrorBody
from hub.events import DIALOG_NAME_PATTERN, AnyEvent

_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Invalid parameter", 401: "Missing or invalid API key",
            404: "Not found", 500: "Server error", 503: "Event store unreachable"}
    return {str(s): _json(_ref("ErrorBody"), text[s]) for s in statuses}


def _param(name: str, description: str, schema: dict[str, Any],
           where: str = "query", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


@cache
def openapi_document() -> dict[str, Any]:
    (_, _, _, _), components = msgspec.json.schema_components(
        (CallView, ListCallsPage, ErrorBody, AnyEvent), ref_template=_REF
    )
    components["CallEvent"] = {
        "oneOf": [_ref(cls.__name__) for cls in AnyEvent.__args__],
        "discriminator": {"propertyName": "type"},
    }
    # Empty means "all dialogs", as the spec says.
    dialog = {"type": "string", "pattern": f"^({DIALOG_NAME_PATTERN.pattern})?$"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "callhub: Call Event Stream API", "version": "1"},
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
            "/v1/calls": {
                "get": {
                    "operationId": "listCalls",
                    "summary": "List active calls",
                    "parameters": [
                        _param("dialog_name", "Filter by dialog name", dialog),
                        _param("page_size", "Maximum number of results",
                               {"type": "integer", "minimum": 1, "maximum": 1000,
                                "default": 50}),
                        _param("page_token", "Token from a previous page", {"type": "string"}),
                    ],
                    "responses": {"200": _json(_ref("ListCallsPage"), "A page of active calls"),
                                  **_errors(400, 401, 500, 503)},
                }
            },
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
            "/healthz": {"get": {"operationId": "healthz", "security": [],
                                 "responses": {"200": {"description": "The process is up"}}}},
            "/readyz": {"get": {"operationId": "readyz", "security": [],
                                "responses": {"200": {"description": "Redis is reachable"},
                                              **_errors(503)}}},
        },
    }
