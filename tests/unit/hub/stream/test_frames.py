"""SSE frames (hub/stream/frames.py): the ``event:`` name each event type goes out under."""

from __future__ import annotations

from callhub.events import EVENT_TYPES
from hub.stream.frames import event_frame, history_frame, wire_name
from tests.support.sse import parse_frame


def test_error_events_are_named_call_error_on_the_wire_and_keep_their_data() -> None:
    data = b'{"type":"error","code":"asr_timeout"}'
    for frame in (event_frame("c1", b"error", data), history_frame(b"error", data)):
        parsed = parse_frame(frame.rstrip(b"\n"))
        assert parsed.event == "call_error" and parsed.data == data


def test_every_other_type_is_named_as_itself_and_no_two_types_share_a_name() -> None:
    names = [wire_name(t.encode()).decode() for t in EVENT_TYPES]
    assert [n for n, t in zip(names, EVENT_TYPES, strict=True) if n != t] == ["call_error"]
    # "error" is what an EventSource's connection-error handlers hear: no event uses it.
    assert "error" not in names and len(set(names)) == len(names)
    assert not set(names) & {"message", "open", "stream_reset"}
