"""The summary of a call's events: the spec's example call, a conversation whose
every figure is known, percentiles, and properties over random calls."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from callhub import events as ev
from callhub.call_summary import (
    SUMMARY_EVENT_TYPES,
    CallSummary,
    HookStats,
    LatencyStats,
    TurnCounts,
    latency_stats,
    percentile,
    summarize,
)
from callhub.transcript import build_transcript
from tests.support.conversations import Conversation, conversations, helpdesk_call
from tests.support.spec_examples import spec_events

NONE = LatencyStats(count=0, p50_ms=None, p95_ms=None, max_ms=None)


def test_the_spec_example_call() -> None:
    assert summarize(spec_events()) == CallSummary(
        session_id="call-abc-123", dialog_name="helpdesk", ended=True, duration_ms=135_000,
        turns=TurnCounts(caller=1, agent=0), caller_talk_ms=2100, agent_talk_ms=0,
        response_latency=NONE, barge_ins=0, dtmf_count=0,
        hooks=HookStats(called=0, failed=0, latency=NONE), states=[],
        final_state="goodbye", reason="normal",
    )


def test_a_conversation_in_numbers() -> None:
    summary = summarize(helpdesk_call().events)
    assert summary == CallSummary(
        session_id="call-abc-123", dialog_name="helpdesk", ended=True, duration_ms=15_500,
        turns=TurnCounts(caller=4, agent=4),
        caller_talk_ms=1800 + 1300 + 500,  # the key press is not talk
        agent_talk_ms=2500 + 900 + 1600 + 2000,
        response_latency=LatencyStats(count=3, p50_ms=650, p95_ms=700, max_ms=700),
        barge_ins=1, dtmf_count=1,
        hooks=HookStats(called=2, failed=1,
                        latency=LatencyStats(count=2, p50_ms=420, p95_ms=2000, max_ms=2000)),
        states=["greeting", "lookup"], final_state="goodbye", reason="caller_hangup",
    )


def test_a_call_still_going_lasts_until_now_or_its_last_event() -> None:
    call = Conversation()
    call.transition(0, "greeting")
    call.agent(1000, "Hello", played_ms=None)
    assert summarize(call.events).duration_ms == 1000
    now = call.at(0) + timedelta(seconds=42)
    summary = summarize(call.events, now=now)
    assert (summary.ended, summary.duration_ms, summary.final_state, summary.reason) == (
        False, 42_000, None, None)
    assert summary.states == ["greeting"]
    assert summarize(call.events, truncated=True).truncated


def test_nearest_rank_percentiles() -> None:
    assert percentile([5], 50) == 5
    assert percentile([1, 2, 3, 4], 50) == 2
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        50, 95, 100)
    assert latency_stats([]) == NONE
    assert latency_stats([30, 10, 20]) == LatencyStats(count=3, p50_ms=20, p95_ms=30, max_ms=30)


def test_no_events() -> None:
    summary = summarize([])
    assert (summary.session_id, summary.duration_ms, summary.turns) == ("", 0, TurnCounts(0, 0))


@given(conversations(), st.integers(0, 10**7))
def test_a_summary_agrees_with_its_transcript_and_events(call: Conversation, ms: int) -> None:
    summary = summarize(call.events, now=call.at(ms))
    transcript = build_transcript(call.events)
    assert summary.turns.caller + summary.turns.agent == len(transcript.turns)
    assert summary.turns.caller == sum(
        isinstance(e, ev.SpeechFinal | ev.DtmfReceived) for e in call.events)
    assert summary.dtmf_count == sum(isinstance(e, ev.DtmfReceived) for e in call.events)
    assert summary.caller_talk_ms == sum(
        e.duration_ms for e in call.events if isinstance(e, ev.SpeechFinal))
    assert summary.barge_ins == sum(t.interrupted for t in transcript.turns)
    assert summary.hooks.called == sum(
        isinstance(e, ev.HookResult | ev.HookError) for e in call.events)
    assert summary.hooks.failed == sum(isinstance(e, ev.HookError) for e in call.events)
    assert summary.ended == any(isinstance(e, ev.CallTerminated) for e in call.events)
    assert summary.duration_ms >= 0 and summary.agent_talk_ms >= 0
    for stats in (summary.response_latency, summary.hooks.latency):
        if stats.count:
            assert stats.p50_ms is not None and stats.p95_ms is not None
            assert stats.max_ms is not None
            assert 0 <= stats.p50_ms <= stats.p95_ms <= stats.max_ms
        else:
            assert stats == NONE
    assert summary.response_latency.count == sum(
        t.response_latency_ms is not None for t in transcript.turns)


@given(conversations())
def test_the_types_it_reads_are_all_it_needs(call: Conversation) -> None:
    read = [e for e in call.events if type(e).__struct_config__.tag in SUMMARY_EVENT_TYPES]
    now = call.at(10**7)
    assert summarize(read, now=now) == summarize(call.events, now=now)
