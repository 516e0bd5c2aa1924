"""A call's record over REST: its stored events, its transcript and its summary.

- ``GET /v1/calls/{id}/events``: the call's events in commit order, the JSON
  exactly as stored (the bytes every subscriber got, never re-encoded), keyset
  paged by entry id. ``after`` is the previous page's ``next_after``: a sealed
  token naming the entry the page stopped at, bound to the call (its session
  id and start) and to the ``event_types`` filter. ``cursor`` is the stream
  cursor after the same entry: ``GET /v1/calls/events`` with it as
  ``Last-Event-ID`` goes on exactly after the page.
- ``GET /v1/calls/{id}/transcript``: ``callhub.transcript`` over the call's
  events, as JSON, a readable script (``Accept: text/plain`` or
  ``?format=text``) or WebVTT (``?format=webvtt``, or ``Accept: text/vtt``).
- ``GET /v1/calls/{id}/summary``: ``callhub.call_summary`` over them; Get Call
  of an ended call carries the same (``with_summary``).

Computed on each read from the call's own stream (nothing is stored twice, and
nothing is cached): for a 200-event call about six Get Calls' time, most of it
reading the stream (``bench/read_api.py``, section 3; docs/records.md has the table).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from callhub.call_summary import SUMMARY_EVENT_TYPES, CallSummary, summarize
from callhub.call_views import CallView
from callhub.cursor import Cursor
from callhub.events import check_session_id
from callhub.tokens import InvalidToken, seal, unseal
from callhub.transcript import (
    TRANSCRIPT_EVENT_TYPES,
    build_transcript,
    transcript_text,
    transcript_webvtt,
)
from callhub.types import StreamId
from hub.api.event_stream import parse_event_types
from hub.api.query import Query
from hub.api.replica import Replica, replica_of
from hub.api.responses import json_response
from hub.errors import BadParameter

PAGE_SIZE_DEFAULT: Final = 100
PAGE_SIZE_MAX: Final = 1000
FORMATS: Final = ("json", "text", "webvtt")
MEDIA_TYPES: Final = {"json": "application/json", "text": "text/plain", "webvtt": "text/vtt"}
_ACCEPTED: Final = {media: name for name, media in MEDIA_TYPES.items()}
_AFTER_KIND: Final = b"callhub-call-events"
_AFTER_VERSION: Final = 1


class _StoredEventsPage(msgspec.Struct, frozen=True):
    """``CallEventsPage`` as sent: the events are the stored JSON, copied as is."""

    session_id: str
    events: list[msgspec.Raw]
    cursor: str
    next_after: str
    has_more: bool
    ended: bool


# An entry id's parts, as far as a token may carry them: a token is not a secret
# (anyone can seal one), so what it holds is checked like any other input.
_IdPart = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class AfterPosition(msgspec.Struct, frozen=True, array_like=True):
    """What an ``after`` token holds: the call and filter it belongs to, and the entry."""

    session_id: str
    start_ms: int
    event_types: str  # sorted, comma-separated; "" for every type
    ms: _IdPart
    seq: _IdPart


def encode_after(position: AfterPosition) -> str:
    return seal(_AFTER_KIND, _AFTER_VERSION, position)


def decode_after(token: str, session_id: str, event_types: str) -> AfterPosition:
    try:
        position = unseal(_AFTER_KIND, _AFTER_VERSION, token, AfterPosition)
    except InvalidToken as error:
        raise BadParameter(f"after is not valid: {error}", param="after") from None
    if position.session_id != session_id:
        raise BadParameter("after belongs to another call's events", param="after")
    if position.event_types != event_types:
        raise BadParameter("after belongs to a page with different event_types", param="after")
    return position


_encoder = msgspec.json.Encoder()


def _session_id(request: Request) -> str:
    session_id: str = request.path_params["id"]
    try:
        return check_session_id(session_id)
    except ValueError as error:
        raise BadParameter(str(error), param="id") from None


async def call_events(request: Request) -> Response:
    replica = replica_of(request)
    principal = replica.keys.authenticate(request)
    query = Query(request.query_params, ("event_types", "after", "page_size"))
    types_text = query.text("event_types", check=parse_event_types)
    types = sorted({t.strip() for t in types_text.split(",") if t.strip()})
    canonical = ",".join(types)
    page_size = query.integer("page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    token = query.text("after")
    session_id = _session_id(request)
    after = decode_after(token, session_id, canonical) if token else None
    page = await replica.records.page(
        session_id, principal.scope, frozenset(t.encode() for t in types) or None,
        (after.ms, after.seq) if after else None, after.start_ms if after else None,
        page_size)
    return Response(_encoder.encode(_StoredEventsPage(
        session_id=session_id,
        events=[msgspec.Raw(data) for data in page.events],
        cursor=_cursor(replica, session_id, page.position),
        next_after=encode_after(AfterPosition(session_id, page.start_ms, canonical,
                                              *page.position)),
        has_more=page.has_more,
        ended=page.ended,
    )), media_type="application/json")


def _cursor(replica: Replica, session_id: str, position: StreamId) -> str:
    keys = replica.settings.keyspace
    return Cursor.at(keys.shards, keys.shard_of(session_id), position).encode()


async def call_transcript(request: Request) -> Response:
    replica = replica_of(request)
    principal = replica.keys.authenticate(request)
    query = Query(request.query_params, ("format",))
    chosen = _format(request, query)
    session_id = _session_id(request)
    read = await replica.records.events(session_id, principal.scope, TRANSCRIPT_EVENT_TYPES)
    transcript = build_transcript(read.events, truncated=read.truncated)
    headers = {"Vary": "Accept"}
    if chosen == "text":
        return Response(transcript_text(transcript), media_type="text/plain", headers=headers)
    if chosen == "webvtt":
        return Response(transcript_webvtt(transcript), media_type="text/vtt", headers=headers)
    response = json_response(transcript)
    response.headers.update(headers)
    return response


def _format(request: Request, query: Query) -> str:
    """``format`` if given (an empty one is a 400), else what ``Accept`` prefers."""
    if "format" in request.query_params:
        chosen = query.text("format")
        if chosen not in FORMATS:
            raise BadParameter(f"format must be one of {', '.join(FORMATS)}", param="format")
        return chosen
    return format_from_accept(request.headers.get("accept", ""))


def format_from_accept(accept: str) -> str:
    """The format of the media type ``accept`` ranks highest (ties: the first
    listed); JSON when it names none of them (``*/*``, or nothing)."""
    best, best_q = "json", 0.0
    for part in accept[:2048].split(","):
        media, *parameters = (p.strip() for p in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        chosen = _ACCEPTED.get(media.lower())
        if chosen is not None and q > best_q:
            best, best_q = chosen, q
    return best


async def call_summary(request: Request) -> Response:
    replica = replica_of(request)
    principal = replica.keys.authenticate(request)
    if request.scope["query_string"]:
        Query(request.query_params, ())
    session_id = _session_id(request)
    read = await replica.records.events(session_id, principal.scope, SUMMARY_EVENT_TYPES)
    now = None if read.ended else datetime.fromtimestamp(time.time(), UTC)
    return json_response(summarize(read.events, now=now, truncated=read.truncated))


async def with_summary(replica: Replica, view: CallView) -> CallView:
    """An ended call's Get Call object with its summary (as it was, should the
    call's events have expired since its hash was read)."""
    events, truncated = await replica.records.stored_events(view.session_id,
                                                            SUMMARY_EVENT_TYPES)
    if not events:
        return view
    summary: CallSummary = summarize(events, truncated=truncated)
    return msgspec.structs.replace(view, summary=summary)

