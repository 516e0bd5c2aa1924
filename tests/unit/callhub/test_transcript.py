"""The transcript of a call's events: the spec's example call, a conversation
whose every figure is known, renderings, and properties over random calls."""

from __future__ import annotations

import html

import msgspec
import webvtt
from hypothesis import given
from hypothesis import strategies as st

from callhub import events as ev
from callhub.transcript import (
    TRANSCRIPT_EVENT_TYPES,
    Transcript,
    Turn,
    Word,
    build_transcript,
    clock,
    transcript_text,
    transcript_webvtt,
)
from tests.support.conversations import Conversation, conversations, helpdesk_call
from tests.support.spec_examples import spec_events
from tests.support.strategies import any_event


def test_the_spec_example_call_is_one_caller_turn() -> None:
    transcript = build_transcript(spec_events())
    assert transcript.session_id == "call-abc-123"
    assert transcript.dialog_name == "helpdesk"
    assert transcript.start_time == "2025-06-14T18:30:00Z"
    assert transcript.ended
    # The final is committed at 18:30:04 after 2.1 s of speech: it began at 1.9 s.
    assert transcript.turns == [Turn(
        speaker="caller", kind="speech", text="I need a password reset", offset_ms=1900,
        duration_ms=2100, confidence=0.94,
        words=[Word("I", 1900, 180, 0.97), Word("need", 2100, 220, 0.96),
               Word("a", 2340, 80, 0.99), Word("password", 2440, 360, 0.93),
               Word("reset", 2820, 280, 0.91)],
        interrupted=False, response_latency_ms=None, seq=2, event_id="evt-002",
    )]


def test_the_spec_example_call_as_a_script_and_as_subtitles() -> None:
    transcript = build_transcript(spec_events())
    assert transcript_text(transcript) == (
        "# call call-abc-123, dialog helpdesk, started 2025-06-14T18:30:00Z, ended\n"
        "[00:01.900] caller: I need a password reset  (confidence 0.94)\n"
    )
    assert transcript_webvtt(transcript) == (
        "WEBVTT\n\n"
        "NOTE call call-abc-123, started 2025-06-14T18:30:00Z\n\n"
        "1\n00:00:01.900 --> 00:00:04.000\n<v caller>I need a password reset</v>\n"
    )
    [cue] = webvtt.from_string(transcript_webvtt(transcript), strict=True).captions
    assert (cue.start, cue.end, cue.voice, cue.text) == (
        "00:00:01.900", "00:00:04.000", "caller", "I need a password reset")


def test_a_conversation_becomes_its_turns_with_latency_and_barge_in() -> None:
    transcript = build_transcript(helpdesk_call().events)
    got = [(t.speaker, t.kind, t.text, t.offset_ms, t.duration_ms, t.interrupted,
            t.response_latency_ms) for t in transcript.turns]
    assert got == [
        ("agent", "speech", "Welcome to the helpdesk. How can I help?", 300, 2500, False, None),
        ("caller", "speech", "I need a password reset", 3200, 1800, False, 650),
        ("agent", "speech", "Sure. Can I have your account number?", 5650, 900, True, None),
        ("caller", "speech", "it is four two", 6700, 1300, False, 700),
        ("agent", "speech", "Thanks. Press 1 to confirm.", 8700, 1600, False, None),
        ("caller", "dtmf", "1", 10_880, 120, False, 300),
        ("agent", "speech", "Done: a reset link is on its way.", 11_300, 2000, False, None),
        ("caller", "speech", "thanks", 14_400, 500, False, None),
    ]
    assert transcript.ended


def test_a_prompt_never_reported_finished_is_interrupted_only_if_the_caller_goes_on() -> None:
    call = Conversation()
    call.agent(100, "Say something.", played_ms=None)
    call.caller(3000, "something", 800)
    call.agent(3400, "And now?", played_ms=None)  # still playing: the call goes on
    first, caller, second = build_transcript(call.events).turns
    assert (first.duration_ms, first.interrupted) == (None, True)
    assert caller.response_latency_ms == 400
    assert (second.duration_ms, second.interrupted) == (None, False)
    assert not build_transcript(call.events).ended


def test_the_completion_of_a_prompt_says_whether_it_was_cut() -> None:
    call = Conversation()
    utterance = call.agent(100, "Please hold.", played_ms=None)
    call.caller(1500, "hmm", 300)  # the caller talks over it; the prompt plays on
    call.complete(utterance, 2000, 1900, interrupted=False)
    agent, _ = build_transcript(call.events).turns
    assert (agent.duration_ms, agent.interrupted) == (1900, False)


def test_times_before_the_start_count_as_zero_and_turns_are_in_time_order() -> None:
    call = Conversation()
    call.caller(500, "early bird", 2000)  # began 1.5 s before the call started
    call.agent(400, "Hello?", played_ms=300)  # stamped before the final it answers
    caller, agent = build_transcript(call.events).turns
    assert (caller.offset_ms, caller.response_latency_ms) == (0, 0)
    assert agent.offset_ms == 400


def test_no_events_is_an_empty_transcript() -> None:
    assert build_transcript([]) == Transcript(session_id="", dialog_name="", start_time=None,
                                              ended=False, turns=[])


def test_clock() -> None:
    assert clock(0) == "00:00.000"
    assert clock(61_001) == "01:01.001"
    assert clock(3_723_004) == "1:02:03.004"


def test_text_and_subtitles_escape_what_would_break_them() -> None:
    call = Conversation()
    call.agent(0, "a\nb <b>bold</b> & --> \x1b[31mred\u2028x", played_ms=500)
    call.caller(2000, "\r\n", 200)
    transcript = build_transcript(call.events)
    text = transcript_text(transcript)
    assert "a\\nb <b>bold</b> & --> \\x1b[31mred\\u2028x" in text
    assert "\x1b" not in text and len(text.splitlines()) == 3
    subtitles = transcript_webvtt(transcript)
    assert "-->" not in subtitles.replace(" --> ", "")
    agent, caller = webvtt.from_string(subtitles, strict=True).captions
    assert html.unescape(agent.raw_text) == "<v agent>a b <b>bold</b> & --> \x1b[31mred x</v>"
    assert caller.raw_text == "<v caller>\u2026</v>"


# ---------------------------------------------------------------------------
# Properties


@given(conversations())
def test_every_final_press_and_prompt_is_one_turn_in_time_order(call: Conversation) -> None:
    transcript = build_transcript(call.events)
    made = sorted(e.event_id for e in call.events
                  if isinstance(e, ev.SpeechFinal | ev.DtmfReceived | ev.TtsStarted))
    assert sorted(t.event_id for t in transcript.turns) == made
    offsets = [t.offset_ms for t in transcript.turns]
    assert offsets == sorted(offsets)
    for turn in transcript.turns:
        event = next(e for e in call.events if e.event_id == turn.event_id)
        assert turn.speaker == ("agent" if isinstance(event, ev.TtsStarted) else "caller")
        assert turn.offset_ms >= 0
        assert turn.duration_ms is None or turn.duration_ms >= 0
        assert turn.response_latency_ms is None or turn.response_latency_ms >= 0
        if turn.speaker == "agent":
            assert turn.response_latency_ms is None and turn.confidence is None
        else:
            assert not turn.interrupted
        if isinstance(event, ev.SpeechFinal):
            assert (turn.text, turn.confidence, turn.duration_ms) == (
                event.transcript, event.confidence, event.duration_ms)
            assert [w.text for w in turn.words] == [s.text for s in event.segments]


@given(conversations())
def test_only_the_last_caller_turn_before_a_prompt_has_a_latency(call: Conversation) -> None:
    transcript = build_transcript(call.events)
    by_id = {t.event_id: t for t in transcript.turns}
    turns = [by_id[e.event_id] for e in call.events if e.event_id in by_id]  # commit order
    for turn, following in zip(turns, [*turns[1:], None], strict=False):
        if turn.speaker == "caller":
            answered = following is not None and following.speaker == "agent"
            assert (turn.response_latency_ms is not None) == answered


@given(conversations())
def test_the_types_it_reads_are_all_it_needs(call: Conversation) -> None:
    read = [e for e in call.events if type(e).__struct_config__.tag in TRANSCRIPT_EVENT_TYPES]
    assert build_transcript(read) == build_transcript(call.events)


@given(conversations(hostile_text=True))
def test_any_transcript_renders_one_line_per_turn_and_parses_as_webvtt(
    call: Conversation,
) -> None:
    transcript = build_transcript(call.events)
    assert len(transcript_text(transcript).splitlines()) == 1 + len(transcript.turns)
    captions = webvtt.from_string(transcript_webvtt(transcript), strict=True).captions
    assert len(captions) == len(transcript.turns)
    starts = []
    for caption, turn in zip(captions, transcript.turns, strict=True):
        start, end = caption.start_time.in_milliseconds(), caption.end_time.in_milliseconds()
        assert start == turn.offset_ms and end > start
        assert caption.voice == turn.speaker
        starts.append(start)
    assert starts == sorted(starts)


@given(st.lists(any_event, max_size=20))
def test_any_events_make_a_transcript_that_encodes(events: list[ev.Event]) -> None:
    transcript = build_transcript(events)
    assert all(t.offset_ms >= 0 for t in transcript.turns)
    msgspec.json.decode(msgspec.json.encode(transcript), type=Transcript)
    transcript_text(transcript)
    webvtt.from_string(transcript_webvtt(transcript), strict=True)
