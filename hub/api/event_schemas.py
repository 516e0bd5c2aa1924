"""``GET /v1/schemas/events.json``: the call events as a JSON Schema (2020-12) document.

For consumers in other languages (TypeScript, Go, Java…) to generate their
types from, and to validate what they receive. Generated from the msgspec
Structs of ``callhub.events`` (msgspec's own schema generation, as the
OpenAPI document is), so it cannot drift from what the hub sends; the checks
the Structs make in code (a session id's and a dialog name's alphabet, UTC
timestamps) are added from the same kernel constants.

``callhub_schema_version`` grows when an event's shape changes in a way a
consumer must notice (a field removed or retyped); new optional fields and
new event types do not change it, and the document allows properties it does
not name, as the hub's own decoders ignore them. Public, like /openapi.json:
it describes the API, not anyone's calls.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from callhub.events import DIALOG_NAME_PATTERN, EVENT_CLASSES, SESSION_ID_PATTERN, AnyEvent
from hub.api.query import Query
from hub.api.responses import json_response

PATH: Final = "/v1/schemas/events.json"
SCHEMA_VERSION: Final = 1
_DEFS: Final = "#/$defs/{name}"


async def event_schemas(request: Request) -> Response:
    if request.scope["query_string"]:
        Query(request.query_params, ())  # takes none: an unknown one is a 400, as everywhere
    response = json_response(events_schema())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@cache
def events_schema() -> dict[str, Any]:
    """The document: one ``$defs`` entry per event type, ``oneOf`` them at the top."""
    _, definitions = msgspec.json.schema_components((AnyEvent,), ref_template=_DEFS)
    for name in (cls.__name__ for cls in EVENT_CLASSES.values()):
        properties = definitions[name]["properties"]
        properties["session_id"]["pattern"] = f"^(?:{SESSION_ID_PATTERN.pattern})$"
        properties["timestamp"].update(
            {"format": "date-time", "pattern": r"(Z|[+-]00:?00)$",
             "description": "ISO 8601, UTC"})
    definitions["CallStarted"]["properties"]["dialog_name"]["pattern"] = (
        f"^(?:{DIALOG_NAME_PATTERN.pattern})$")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://callhub.invalid{PATH}",
        "title": "CallEvent",
        "description": "One call event, as the event stream's data and the REST API carry "
                       "it; its type names its schema (the `type` property).",
        "callhub_schema_version": SCHEMA_VERSION,
        "oneOf": [{"$ref": _DEFS.format(name=cls.__name__)} for cls in EVENT_CLASSES.values()],
        "$defs": definitions,
    }


def schema_paths() -> dict[str, Any]:
    """The route's entry in the OpenAPI document."""
    return {PATH: {"get": {
        "operationId": "getEventSchemas", "security": [],
        "summary": "The call events as a JSON Schema (2020-12) document",
        "responses": {"200": {"description": "The JSON Schema document", "content": {
            "application/schema+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}}}}},
    }}}
