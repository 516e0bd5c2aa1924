"""The REST answers and stream notices as the client decodes them.

Events are the kernel's own Structs (``callhub.events``), transcripts and
summaries too (``callhub.transcript``, ``callhub.call_summary``). The Get Call
object and the pages are defined by the hub (``hub/store/call_store.py``),
which a client may not import (it speaks only HTTP); so they are declared
here with the same fields, and a test holds both to the same JSON Schema.
Decoders ignore fields they do not know: a newer hub's additions do no harm.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from callhub.call_summary import CallSummary
from callhub.events import AnyEvent, Scalar
from callhub.transcript import Transcript

CallStatus = Literal["active", "on_hold", "transferring", "terminated"]


class Call(msgspec.Struct, frozen=True, omit_defaults=True):
    """A call, as Get Call and List Calls answer (``summary`` once it has ended)."""

    session_id: str
    caller_id: str
    called_number: str
    dialog_name: str
    current_state: str
    start_time: str
    duration_seconds: int
    status: CallStatus
    variables: dict[str, Scalar]
    cursor: str
    end_time: str | None = None
    reason: str | None = None
    final_state: str | None = None
    summary: CallSummary | None = None


class CallPage(msgspec.Struct, frozen=True):
    """One page of List Calls; ``next_page_token`` is empty on the last."""

    calls: list[Call]
    next_page_token: str
    total_count: int


class CallEventsPage(msgspec.Struct, frozen=True):
    """One page of a call's stored events (``GET /v1/calls/{id}/events``)."""

    session_id: str
    events: list[AnyEvent]
    cursor: str
    next_after: str
    has_more: bool
    ended: bool


class ExportedCall(Call, frozen=True, omit_defaults=True):
    """One line of ``callhub export``: the Get Call object, and its transcript if asked."""

    transcript: Transcript | None = None


class ExportPage(msgspec.Struct, frozen=True):
    """One List Calls page as export lines, and how many calls the listing has."""

    calls: list[ExportedCall]
    total_count: int


class StreamReset(msgspec.Struct, frozen=True):
    """The hub's ``stream_reset`` notice: the cursor was older than the retention
    window, so the events between it and ``oldest_position`` are gone; the
    stream goes on from there."""

    reason: str = ""
    oldest_position: str = ""
    message: str = ""


class HistoryEnd(msgspec.Struct, frozen=True):
    """With ``include_history``: the replayed history is over, live events follow.

    History events carry no cursor (a reconnect replays history again, and the
    client drops what it already yielded); from here on every event has one.
    """

    cursor: str


class UnknownEvent(msgspec.Struct, frozen=True):
    """An event this client cannot decode: a newer hub's type or field.

    It comes through rather than raising, so an old consumer keeps working;
    ``data`` is the JSON as received and ``error`` why it did not decode.
    """

    type: str
    session_id: str
    data: bytes
    error: str


class _Envelope(msgspec.Struct):
    type: str = ""
    session_id: str = ""
