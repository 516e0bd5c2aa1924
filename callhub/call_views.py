"""The call objects the REST API answers with, defined once for the hub and its clients.

The replica builds them (``hub.store.call_store``, ``hub.api.call_records``) and
``callhub.client`` decodes them: both import them from here, so the OpenAPI
document (generated from these Structs) and the client cannot drift apart.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from callhub.call_summary import CallSummary
from callhub.events import AnyEvent, Scalar

CallStatus = Literal["active", "on_hold", "transferring", "terminated"]


class CallView(msgspec.Struct, frozen=True, omit_defaults=True):
    """The spec's call object, plus the cursor this snapshot reflects.

    ``cursor`` is a stream position: subscribing to ``/v1/calls/events`` with
    it as ``last_event_id`` continues exactly after the last event this
    snapshot includes. ``end_time``, ``reason`` and ``final_state`` appear once
    the call has ended, and Get Call adds its ``summary`` then.
    """

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


class ListCallsPage(msgspec.Struct, frozen=True):
    """One page of calls; ``next_page_token`` is empty on the last page."""

    calls: list[CallView]
    next_page_token: str
    total_count: int


class CallEventsPage(msgspec.Struct, frozen=True):
    """One page of a call's stored events, in commit order.

    ``next_after`` asks for the events after this page (also on the last page:
    an active call's later events come after it); ``has_more`` is false when no
    stored event after the page matches. ``cursor`` is the event stream's
    cursor after the page: ``Last-Event-ID`` to go on live. ``ended``: the
    call's ``call_terminated`` is stored.
    """

    session_id: str
    events: list[AnyEvent]
    cursor: str
    next_after: str
    has_more: bool
    ended: bool
