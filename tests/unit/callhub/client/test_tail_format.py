"""callhub tail's lines: the essentials of each of the 12 types, one line, nothing unescaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given

from callhub import events as ev
from callhub.client.tail_format import clean, duration, format_event
from tests.support.strategies import any_event

AT = datetime(2025, 6, 14, 18, 30, 4, 250_000, tzinfo=UTC)
ENVELOPE = dict(event_id="evt-1", session_id="call-abc-123", timestamp=AT, seq=2)
ANSI = re.compile(r"\x1b\[[0-9;]*m")

EXAMPLES: list[tuple[ev.Event, str]] = [
    (ev.CallStarted(**ENVELOPE, caller_id="+15551234567", called_number="+18001234567",
                    dialog_name="helpdesk"),
     "call_started     call-abc-123   +15551234567 → +18001234567  dialog helpdesk"),
    (ev.CallTerminated(**ENVELOPE, reason="caller_hangup", duration_seconds=135,
                       state_transitions=4, final_state="goodbye"),
     "call_terminated  call-abc-123   caller_hangup after 2m15s  final state goodbye,"
     " 4 transitions"),
    (ev.SpeechPartial(**ENVELOPE, transcript="I need a pass", confidence=0.5, language="en",
                      duration_ms=900),
     'speech_partial   call-abc-123   "I need a pass" (50%)'),
    (ev.SpeechFinal(**ENVELOPE, transcript="I need a password reset", confidence=0.94,
                    language="en", duration_ms=2100),
     'speech_final     call-abc-123   "I need a password reset" (94%) en'),
    (ev.DtmfReceived(**ENVELOPE, digit="#", duration_ms=120),
     "dtmf_received    call-abc-123   digit # (120 ms)"),
    (ev.StateTransition(**ENVELOPE, from_state="greeting", to_state="collect_info",
                        trigger_event="speech_final", dialog_name="helpdesk"),
     "state_transition call-abc-123   greeting → collect_info  on speech_final"),
    (ev.ActionExecuted(**ENVELOPE, action="transfer", state="transfer_wait",
                       parameters={"target": "+18005550100", "timeout_s": 30},
                       variables={"queue": "tier 2", "vip": True, "old": None}),
     'action_executed  call-abc-123   transfer in transfer_wait target=+18005550100'
     ' timeout_s=30 set queue="tier 2" vip=true old=null'),
    (ev.HookResult(**ENVELOPE, hook_name="crm_lookup", state="identify", status_code=200,
                   duration_ms=84, variables={"customer": "Jane"}),
     "hook_result      call-abc-123   crm_lookup → 200 in 84 ms (state identify)"
     " set customer=Jane"),
    (ev.HookError(**ENVELOPE, hook_name="crm_lookup", state="identify",
                  error_kind="http_status", message="upstream said no", duration_ms=40,
                  status_code=502),
     "hook_error       call-abc-123   crm_lookup http_status 502: upstream said no after 40 ms"
     " (state identify)"),
    (ev.TtsStarted(**ENVELOPE, utterance_id="utt-7", text="Hello, how can I help?",
                   voice="en-US-1", state="greeting"),
     'tts_started      call-abc-123   utt-7 "Hello, how can I help?"  voice en-US-1'
     " (state greeting)"),
    (ev.TtsCompleted(**ENVELOPE, utterance_id="utt-7", duration_ms=1800, interrupted=True),
     "tts_completed    call-abc-123   utt-7 interrupted (barge-in) after 1800 ms"),
    (ev.Error(**ENVELOPE, code="asr_unavailable", message="ASR backend down",
              component="speech", fatal=True),
     "error            call-abc-123   speech: asr_unavailable: ASR backend down FATAL"),
]


def test_every_type_has_an_example() -> None:
    assert sorted(type(event).__name__ for event, _ in EXAMPLES) == sorted(
        cls.__name__ for cls in ev.EVENT_CLASSES.values()
    )


@pytest.mark.parametrize(("event", "line"), EXAMPLES,
                         ids=[type(event).__name__ for event, _ in EXAMPLES])
def test_each_type_reads_as_its_essentials(event: ev.Event, line: str) -> None:
    assert format_event(ev.encode_event(event)) == "18:30:04.250 " + line


def test_colour_paints_the_type_and_dims_partial_text_and_nothing_else() -> None:
    partial = format_event(ev.encode_event(EXAMPLES[2][0]), colour=True)
    assert partial.startswith("18:30:04.250 \x1b[2;36mspeech_partial  \x1b[0m call-abc-123")
    assert partial.endswith('\x1b[2m"I need a pass" (50%)\x1b[0m')
    final = format_event(ev.encode_event(EXAMPLES[3][0]), colour=True)
    assert "\x1b[36mspeech_final" in final
    assert ANSI.sub("", final) == format_event(ev.encode_event(EXAMPLES[3][0]))


def test_the_start_of_the_dialog_reads_as_start() -> None:
    event = ev.StateTransition(**ENVELOPE, from_state="", to_state="greeting",
                               trigger_event="call_started", dialog_name="helpdesk")
    assert format_event(ev.encode_event(event)).endswith("(start) → greeting  on call_started")


def test_what_a_caller_says_cannot_break_the_line_or_steer_the_terminal() -> None:
    event = ev.SpeechFinal(**ENVELOPE, transcript="one\ntwo\r\x1b[2J\u202eevil\x07",
                           confidence=1.0, language="en", duration_ms=1)
    line = format_event(ev.encode_event(event))
    assert '"one\\ntwo\\r\\x1b[2J\\u202eevil\\x07" (100%)' in line


def test_an_event_of_a_newer_hub_still_gets_a_line() -> None:
    data = (b'{"type":"sentiment","session_id":"call-1","timestamp":"2025-06-14T18:30:04Z",'
            b'"score":0.8}')
    line = format_event(data)
    assert line.startswith("18:30:04.000 sentiment        call-1         {")
    assert line.endswith('"score":0.8}')


def test_bytes_that_are_not_an_event_still_get_a_line() -> None:
    assert format_event(b"\xff not json\n").split() == [
        "--:--:--.---", "?", "?", "\ufffd", "not", "json\\n"
    ]
    assert format_event(b'{"type":"dtmf_received"}').split()[1] == "dtmf_received"


def test_long_unknown_events_are_cut() -> None:
    data = msgspec.json.encode({"type": "x", "blob": "a" * 10_000})
    assert format_event(data).endswith("a…")
    assert len(format_event(data)) < 400


@pytest.mark.parametrize(("seconds", "text"),
                         [(0, "0s"), (59, "59s"), (60, "1m00s"), (135, "2m15s"),
                          (3600, "1h00m00s"), (90_061, "25h01m01s")])
def test_durations_read_like_a_clock(seconds: int, text: str) -> None:
    assert duration(seconds) == text


@given(any_event)
def test_any_event_is_one_clean_line_with_its_time_type_and_session(event: ev.Event) -> None:
    data = ev.encode_event(event)
    line = format_event(data)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line)
    assert "\u2028" not in line and "\u2029" not in line
    kind = str(type(event).__struct_config__.tag)
    timestamp = event.timestamp
    assert line.startswith(f"{timestamp:%H:%M:%S}.{timestamp.microsecond // 1000:03d} {kind} ")
    assert f" {clean(event.session_id)} " in line + " "
    coloured = format_event(data, colour=True)
    assert ANSI.sub("", coloured) == line
