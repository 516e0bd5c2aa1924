"""docs/records.md's examples are what callhub computes: the events page of
the spec's example call, and the transcript (a turn, the script, the
subtitles) and summary of the document's example call, built here event by
event as the document describes it."""

from __future__ import annotations

import msgspec
import webvtt

from callhub import events as ev
from callhub.call_summary import summarize
from callhub.call_views import CallEventsPage, ListCallsPage
from callhub.cursor import Cursor
from callhub.transcript import build_transcript, transcript_text, transcript_webvtt
from hub.api.call_records import decode_after
from tests.support.conversations import Conversation
from tests.support.readme import code_blocks, document
from tests.support.spec_examples import spec_events

RECORDS = document("records.md")
LISTING, PAGE, TURN, SUMMARY = code_blocks(RECORDS, "json")
[SCRIPT] = code_blocks(RECORDS, "text")
[SUBTITLES] = code_blocks(RECORDS, "vtt")
SPEC_SEGMENTS = next(e for e in spec_events() if isinstance(e, ev.SpeechFinal)).segments


def example_call() -> Conversation:
    """The document's call: a greeting, a question, an answer cut short by a key."""
    call = Conversation(event_ids="evt-{seq:03d}")
    call.transition(0, "greeting")
    call.agent(300, "Welcome to the helpdesk. How can I help?", played_ms=2400)
    call.caller(6000, "I need a password reset", 2100, confidence=0.94,
                segments=SPEC_SEGMENTS)
    call.agent(6800, "Sure. What is your account number?", played_ms=900, interrupted=True)
    call.press(8400, "5", 120)
    call.transition(8400, "reset", "greeting")
    call.hook(8600, "send_reset_link", 180)
    call.agent(8700, "Thanks, a reset link is on its way.", played_ms=2000)
    call.end(12_000, "normal")
    return call


def test_the_events_page_is_the_spec_examples_stored_json() -> None:
    raw = msgspec.json.decode(PAGE.encode(), type=dict[str, msgspec.Raw])
    events = msgspec.json.decode(raw["events"], type=list[msgspec.Raw])
    assert [bytes(e) for e in events] == [ev.encode_event(e) for e in spec_events()[1:]]
    page = msgspec.json.decode(PAGE.encode(), type=CallEventsPage)
    after = decode_after(page.next_after, "call-abc-123", "call_terminated,speech_final")
    assert Cursor.decode(page.cursor, 1).positions == ((after.ms, after.seq),)
    assert (page.has_more, page.ended) == (False, True)


def test_the_ended_calls_listing_is_the_spec_examples_ended_call() -> None:
    page = msgspec.json.decode(LISTING.encode(), type=ListCallsPage)
    started, *_, ended = spec_events()
    assert isinstance(started, ev.CallStarted) and isinstance(ended, ev.CallTerminated)
    [call] = page.calls
    assert (page.total_count, page.next_page_token) == (1, "")
    assert (call.session_id, call.caller_id, call.dialog_name, call.status) == (
        started.session_id, started.caller_id, started.dialog_name, "terminated")
    assert call.end_time == "2025-06-14T18:32:15Z" == ended.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (call.reason, call.final_state, call.duration_seconds, call.summary) == (
        ended.reason, ended.final_state, ended.duration_seconds, None)
    assert Cursor.decode(call.cursor, 1).positions[0] is not None


def test_the_transcript_examples_are_the_example_calls() -> None:
    transcript = build_transcript(example_call().events)
    assert msgspec.json.decode(TURN.encode()) == msgspec.to_builtins(transcript.turns[1])
    assert transcript_text(transcript) == SCRIPT
    assert transcript_webvtt(transcript) == SUBTITLES
    assert len(webvtt.from_string(SUBTITLES, strict=True).captions) == 5


def test_the_summary_example_is_the_example_calls() -> None:
    assert msgspec.json.decode(SUMMARY.encode()) == msgspec.to_builtins(
        summarize(example_call().events))
