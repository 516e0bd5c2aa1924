"""The OpenAPI paths of a call's record (``hub.api.call_records``): events,
transcript, summary. ``hub.api.openapi`` adds them, and their schemas (from
``RECORD_SCHEMAS``, the Structs the handlers send) to its document."""

from __future__ import annotations

from typing import Any, Final

from callhub.call_summary import CallSummary
from callhub.call_views import CallEventsPage
from callhub.events import EVENT_TYPES
from callhub.transcript import Transcript
from hub.api.call_records import FORMATS, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX

RECORD_SCHEMAS: Final = (CallEventsPage, Transcript, CallSummary)
_REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _errors() -> dict[str, Any]:
    text = {400: "Invalid parameter", 401: "Missing or invalid API key", 404: "No such call "
            "(or not one this key sees)", 500: "Server error", 503: "Event store unreachable"}
    return {str(status): {"description": description,
                          "content": {"application/json": {"schema": _ref("ErrorBody")}}}
            for status, description in text.items()}


def _param(name: str, description: str, schema: dict[str, Any],
           where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path",
            "description": description, "schema": schema}


def record_paths() -> dict[str, Any]:
    call_id = {**_param("id", "Call session ID", {"type": "string"}, where="path"),
               "example": "call-abc-123"}
    one_type = "|".join(EVENT_TYPES)
    types = {"type": "string", "pattern": rf"^\s*({one_type})?\s*(,\s*({one_type})?\s*)*$"}
    return {
        "/v1/calls/{id}/events": {"get": {
            "operationId": "listCallEvents",
            "summary": "A call's stored events, in commit order (active and ended calls)",
            "parameters": [
                call_id,
                _param("event_types", "Comma-separated event types (empty = all)", types),
                _param("after", "The next_after of the previous page", {"type": "string"}),
                _param("page_size", "Maximum number of events",
                       {"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX,
                        "default": PAGE_SIZE_DEFAULT}),
            ],
            "responses": {
                "200": {"description": "A page of events, each exactly as the event stream "
                        "sent it; cursor resumes the stream after the page",
                        "content": {"application/json": {"schema": _ref("CallEventsPage")}}},
                **_errors()},
        }},
        "/v1/calls/{id}/transcript": {"get": {
            "operationId": "getCallTranscript",
            "summary": "The call's conversation as turns (JSON, a readable script or WebVTT)",
            "parameters": [
                call_id,
                _param("format", "json (the default), text (as Accept: text/plain) or webvtt "
                       "(as Accept: text/vtt)", {"type": "string", "enum": list(FORMATS)}),
            ],
            "responses": {
                "200": {"description": "The transcript", "content": {
                    "application/json": {"schema": _ref("Transcript")},
                    "text/plain": {"schema": {"type": "string"}},
                    "text/vtt": {"schema": {"type": "string"}},
                }},
                **_errors()},
        }},
        "/v1/calls/{id}/summary": {"get": {
            "operationId": "getCallSummary",
            "summary": "What happened in the call, in numbers (any call; Get Call of an "
                       "ended call carries it too)",
            "parameters": [call_id],
            "responses": {
                "200": {"description": "The summary",
                        "content": {"application/json": {"schema": _ref("CallSummary")}}},
                **_errors()},
        }},
    }
