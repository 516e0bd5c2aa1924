"""Reading JSON Lines: defaults that make a re-publish a no-op, per-line errors."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from callhub import events as ev
from tests.support.strategies import any_event
from workers.commit.event_lines import LineError, NumberedEvent, read_event_lines


def _line(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def test_missing_seq_is_the_position_among_the_sessions_lines_good_or_bad() -> None:
    lines = [
        _line(type="call_started", session_id="a", caller_id="1", called_number="2",
              dialog_name="d"),
        _line(type="call_started", session_id="b", caller_id="1", called_number="2",
              dialog_name="d"),
        _line(type="dtmf_received", session_id="a", digit="Z", duration_ms=1),
        _line(type="dtmf_received", session_id="a", digit="1", duration_ms=1),
        _line(type="dtmf_received", session_id="b", digit="2", duration_ms=1, seq=7),
    ]
    items = list(read_event_lines(lines))
    assert isinstance(items[2], LineError) and items[2].line == 3
    seqs = {(i.event.session_id, i.event.seq) for i in items if isinstance(i, NumberedEvent)}
    assert seqs == {("a", 1), ("b", 1), ("a", 3), ("b", 7)}


def test_missing_event_id_and_timestamp_are_generated() -> None:
    [item] = read_event_lines([_line(type="call_started", session_id="a", caller_id="1",
                                     called_number="2", dialog_name="d")])
    assert isinstance(item, NumberedEvent)
    assert item.event.event_id.startswith("evt-")
    assert item.event.timestamp.utcoffset() is not None


def test_each_kind_of_bad_line_gets_its_own_message_and_number() -> None:
    lines = [b"{not json\n", b"[1,2]\n", b"\n", _line(session_id="a"), _line(type="nope"),
             _line(type="dtmf_received", session_id="a{b", digit="1", duration_ms=1)]
    errors = [item for item in read_event_lines(lines) if isinstance(item, LineError)]
    assert [e.line for e in errors] == [1, 2, 4, 5, 6]
    assert "invalid JSON" in errors[0].reason
    assert "object" in errors[1].reason
    assert "missing field `type`" in errors[2].reason
    assert "unknown type 'nope'" in errors[3].reason
    assert "contains '{'" in errors[4].reason


@given(st.lists(any_event, max_size=8))
def test_complete_events_read_back_unchanged(events: list[ev.Event]) -> None:
    lines = [ev.encode_event(event) + b"\n" for event in events]
    items = list(read_event_lines(lines))
    assert [item.event for item in items if isinstance(item, NumberedEvent)] == events


def test_json_nested_too_deeply_is_a_line_error_and_the_next_line_is_read() -> None:
    deep = b'{"type": "call_started", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    good = json.dumps({"type": "dtmf_received", "session_id": "c-1", "digit": "5",
                       "duration_ms": 80}).encode()
    got = list(read_event_lines([deep, good]))
    assert got[0] == LineError(1, "invalid JSON: nested too deeply")
    assert isinstance(got[1], NumberedEvent) and got[1].line == 2
