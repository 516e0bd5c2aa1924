"""``callhub.client``: a typed client of a hub's HTTP API, for integrations and the CLI.

It speaks only HTTP to a hub (works through load balancers, with API keys, TLS
and client certificates), so it imports the kernel (the event schema, the
transcript and summary types) and nothing of ``hub`` or ``workers``::

    from callhub.client import CallhubClient, FileCursorStore
    from callhub.events import SpeechFinal

    async with CallhubClient("https://hub.example", api_key=key) as hub:
        stream = hub.events(event_types=["speech_final"], dialog_name="helpdesk",
                            cursor_store=FileCursorStore("helpdesk.cursor"))
        async for event in stream:
            match event:
                case SpeechFinal(session_id=sid, transcript=text):
                    print(sid, text)
            await stream.ack()  # handled: a restart goes on after it

``callhub.client.sync`` is the same for scripts and notebooks, without async.
"""

from callhub.client.cursor_store import (
    CursorStore,
    FileCursorStore,
    MemoryCursorStore,
    RedisCursorStore,
)
from callhub.client.errors import (
    BadRequest,
    CallhubError,
    ClientConfigError,
    Forbidden,
    HubError,
    HubUnavailable,
    HubUnreachable,
    NotAHub,
    NotFound,
    RetriesExhausted,
    Unauthorized,
    UntrustedCertificate,
)
from callhub.client.event_stream import Delivery, EventStream, RetryPolicy, StreamItem
from callhub.client.hub_client import CallhubClient
from callhub.client.models import (
    Call,
    CallEventsPage,
    CallPage,
    ExportedCall,
    ExportPage,
    HistoryEnd,
    StreamReset,
    UnknownEvent,
)

__all__ = [
    "BadRequest", "Call", "CallEventsPage", "CallPage", "CallhubClient", "CallhubError",
    "ClientConfigError", "CursorStore", "Delivery", "EventStream", "ExportPage", "ExportedCall",
    "FileCursorStore", "Forbidden", "HistoryEnd", "HubError", "HubUnavailable",
    "HubUnreachable", "MemoryCursorStore", "NotAHub", "NotFound", "RedisCursorStore",
    "RetriesExhausted", "RetryPolicy", "StreamItem", "StreamReset", "Unauthorized",
    "UnknownEvent", "UntrustedCertificate",
]
