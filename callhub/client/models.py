"""The REST answers and stream notices as the client decodes them.

Events are the kernel's own Structs (``callhub.events``), transcripts and
summaries too (``callhub.transcript``, ``callhub.call_summary``), and the Get
Call object and the pages (``callhub.call_views``, which the hub builds its
answers with): one definition for both sides. Decoders ignore fields they do
not know: a newer hub's additions do no harm.
"""

from __future__ import annotations

import msgspec

from callhub.call_views import CallEventsPage as CallEventsPage
from callhub.call_views import CallStatus as CallStatus
from callhub.call_views import CallView, ListCallsPage
from callhub.transcript import Transcript

# The hub's own answer Structs (the kernel's), under the client's names.
Call = CallView  # a call, as Get Call and List Calls answer (``summary`` once it has ended)
CallPage = ListCallsPage  # one page of List Calls; ``next_page_token`` is empty on the last


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
