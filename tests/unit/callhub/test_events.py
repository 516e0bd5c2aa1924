"""The event schema: round trips, the spec's examples, and what it refuses."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub import events as ev
from tests.support.paths import DATA
from tests.support.strategies import PAYLOADS, any_event, call_started, dtmf, events_of

SPEC_EVENTS = DATA / "spec_events.jsonl"


@given(any_event)
def test_encode_then_decode_gives_the_same_event(event: ev.Event) -> None:
    data = ev.encode_event(event)
    assert ev.decode_event(data) == event
    assert json.loads(data)["type"] == type(event).__struct_config__.tag


def test_every_spec_example_decodes_with_the_spec_field_values() -> None:
    for line in SPEC_EVENTS.read_bytes().splitlines():
        event = ev.decode_event(line)
        original = json.loads(line)
        assert json.loads(ev.encode_event(event)) == original


def test_the_union_covers_the_twelve_types_of_the_spec() -> None:
    assert set(ev.EVENT_TYPES) == {
        "call_started", "call_terminated", "speech_partial", "speech_final",
        "dtmf_received", "state_transition", "action_executed", "hook_result",
        "hook_error", "tts_started", "tts_completed", "error",
    }
    assert set(ev.EVENT_CLASSES) == set(ev.EVENT_TYPES)


@given(any_event, st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True),
                                  st.integers() | st.text(), max_size=3))
def test_unknown_fields_from_a_newer_worker_are_ignored(event: ev.Event, extra: dict) -> None:
    fields = json.loads(ev.encode_event(event))
    fields.update(extra)
    assert ev.decode_event(json.dumps(fields)) == event


def _with(event: ev.Event, **changes: object) -> bytes:
    fields = json.loads(ev.encode_event(event))
    fields.update(changes)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"digit": "Z"}, "$.digit"),
        ({"digit": "55"}, "$.digit"),
        ({"duration_ms": -1}, "$.duration_ms"),
        ({"seq": 0}, "$.seq"),
        ({"seq": "1"}, "$.seq"),
        ({"session_id": "a{b"}, "contains '{'"),
        ({"session_id": "a}b"}, "contains '}'"),
        ({"session_id": "a\nb"}, "contains '\\n'"),
        ({"session_id": "a:b"}, "contains ':'"),
        ({"session_id": ""}, "must not be empty"),
        ({"session_id": "x" * 129}, "longer than 128"),
        ({"timestamp": "2025-06-14T18:30:00+02:00"}, "UTC"),
        ({"timestamp": "2025-06-14T18:30:00"}, "UTC"),
        ({"timestamp": "yesterday"}, "$.timestamp"),
        ({"event_id": ""}, "$.event_id"),
        ({"event_id": "a\r\nb"}, "$.event_id"),
        ({"type": "call_exploded"}, "$.type"),
    ],
)
def test_invalid_values_are_refused_with_a_message_naming_them(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        ev.decode_event(_with(dtmf("call-1", 2), **changes))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("cls", "changes", "message"),
    [
        (ev.SpeechFinal, {"confidence": 1.01}, "$.confidence"),
        (ev.SpeechFinal, {"confidence": -0.1}, "$.confidence"),
        (ev.SpeechFinal, {"segments": [{"text": "a", "start_ms": 5, "end_ms": 4,
                                        "confidence": 0.5}]}, "end_ms"),
        (ev.SpeechPartial, {"duration_ms": -5}, "$.duration_ms"),
        (ev.CallTerminated, {"reason": "bored"}, "$.reason"),
        (ev.CallTerminated, {"duration_seconds": -1}, "$.duration_seconds"),
        (ev.CallStarted, {"dialog_name": "help desk"}, "dialog_name"),
        (ev.CallStarted, {"dialog_name": "a:b"}, "dialog_name"),
        (ev.HookResult, {"status_code": 99}, "$.status_code"),
        (ev.ActionExecuted, {"action": "dance"}, "$.action"),
    ],
)
@given(data=st.data())
def test_type_specific_rules(
    cls: type[ev.Event], changes: dict, message: str, data: st.DataObject
) -> None:
    event = data.draw(events_of(cls))
    with pytest.raises(msgspec.ValidationError) as error:
        ev.decode_event(_with(event, **changes))
    assert message in str(error.value)


@given(st.text(max_size=140))
def test_check_session_id_accepts_exactly_the_documented_alphabet(text: str) -> None:
    ok = bool(ev.SESSION_ID_PATTERN.fullmatch(text))
    if ok:
        assert ev.check_session_id(text) == text
        assert not set(text) & set("{}:\r\n /")
    else:
        with pytest.raises(ev.InvalidSessionId):
            ev.check_session_id(text)


@given(events_of(ev.HookResult) | events_of(ev.ActionExecuted))
def test_variables_patch_comes_from_the_events_that_carry_one(event: ev.Event) -> None:
    assert ev.variables_patch(call_started("c-1")) == {}
    assert ev.variables_patch(event) == event.variables  # type: ignore[attr-defined]


def test_strategies_cover_every_type() -> None:
    assert {cls.__struct_config__.tag for cls in PAYLOADS} == set(ev.EVENT_TYPES)
