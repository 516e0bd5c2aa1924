"""Stored events decode into unchecked subclasses of their classes: the same
event, field for field and byte for byte, with JSON types still checked."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given

from callhub import events as ev
from callhub.trusted_events import TRUSTED_EVENT_CLASSES, decode_trusted_event
from tests.support.conversations import helpdesk_call
from tests.support.strategies import any_event


@given(any_event)
def test_a_stored_event_decodes_to_the_same_event(event: ev.Event) -> None:
    data = ev.encode_event(event)
    stored = decode_trusted_event(data)
    assert isinstance(stored, type(event)) and type(stored) is not type(event)
    assert msgspec.to_builtins(stored) == msgspec.to_builtins(event)
    assert ev.encode_event(stored) == data


def test_words_decode_unchecked_too() -> None:
    final = next(e for e in helpdesk_call().events if isinstance(e, ev.SpeechFinal))
    stored = decode_trusted_event(ev.encode_event(final))
    assert isinstance(stored, ev.SpeechFinal)
    assert all(isinstance(s, ev.Segment) and type(s) is not ev.Segment for s in stored.segments)
    assert [s.text for s in stored.segments] == [s.text for s in final.segments]


def test_one_class_per_type() -> None:
    assert [c.__struct_config__.tag for c in TRUSTED_EVENT_CLASSES] == list(ev.EVENT_TYPES)


@pytest.mark.parametrize("data", [
    b'{"type":"dtmf_received","event_id":"e","session_id":"c","timestamp":"2025-06-14T18:30:00Z",'
    b'"seq":"1","digit":"5","duration_ms":1}',  # seq is a string
    b'{"type":"dtmf_received","event_id":"e","session_id":"c","timestamp":"2025-06-14T18:30:00Z",'
    b'"seq":1,"digit":"x","duration_ms":1}',  # not a digit
    b'{"type":"no_such_type","event_id":"e"}',
    b'not json',
])
def test_json_types_and_literals_are_still_checked(data: bytes) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        decode_trusted_event(data)
