"""A call's summary: what happened in it, in numbers, derived from its own events.

Pure, like ``callhub.transcript`` (whose turns it counts): the events of one
call in commit order in, a ``CallSummary`` out. The hub serves it (``GET
/v1/calls/{id}/summary``, and Get Call of an ended call); a client can run it
over events it holds.

- **Turns** per speaker and **talk time**: the transcript's turns; the
  caller's talk time is the sum of its ``speech_final`` durations (key presses
  are not talk), the agent's the sum of its prompts' played durations
  (``tts_completed``; a prompt still playing adds nothing yet).
- **Response latency**: the transcript's per-turn latencies (see there).
- **Hooks**: every ``hook_result`` and ``hook_error`` is a hook called; a
  ``hook_error`` is a failure (a hook that answers a status other than 2xx is
  a ``hook_error`` of kind ``http_status``); latency over both, from their
  ``duration_ms``.
- **States**: every ``state_transition``'s ``to_state`` in commit order
  (repeats kept: a dialog may come back to a state).
- **Duration**: from the call's start to its ``call_terminated``; for a call
  still going, to ``now`` (or to its last event when no ``now`` is given).
- **Percentiles** are nearest-rank: p95 is the smallest value that at least
  95 % of the values do not exceed (so always one of the values).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

import msgspec

from callhub import events as ev
from callhub.transcript import (
    TRANSCRIPT_EVENT_TYPES,
    build_transcript,
    call_start,
    event_type,
    millis_between,
)

SUMMARY_EVENT_TYPES: Final = TRANSCRIPT_EVENT_TYPES | {
    "state_transition", "hook_result", "hook_error",
}


_HOOK_TYPES: Final = frozenset({"hook_result", "hook_error"})


class LatencyStats(msgspec.Struct, frozen=True):
    """``count`` values, in milliseconds; the others are ``None`` when there are none."""

    count: int
    p50_ms: int | None
    p95_ms: int | None
    max_ms: int | None


class TurnCounts(msgspec.Struct, frozen=True):
    """Turns per speaker (the caller's include its key presses)."""

    caller: int
    agent: int


class HookStats(msgspec.Struct, frozen=True):
    called: int
    failed: int
    latency: LatencyStats


class CallSummary(msgspec.Struct, frozen=True):
    """What happened in a call. ``final_state`` and ``reason`` are an ended call's;
    ``truncated``: the call had more events than were read."""

    session_id: str
    dialog_name: str
    ended: bool
    duration_ms: int
    turns: TurnCounts
    caller_talk_ms: int
    agent_talk_ms: int
    response_latency: LatencyStats
    barge_ins: int
    dtmf_count: int
    hooks: HookStats
    states: list[str]
    final_state: str | None
    reason: ev.TerminationReason | None
    truncated: bool = False


def percentile(ordered: Sequence[int], percent: float) -> int:
    """The nearest-rank percentile of values sorted ascending (not empty)."""
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_stats(values: Iterable[int]) -> LatencyStats:
    ordered = sorted(values)
    if not ordered:
        return LatencyStats(count=0, p50_ms=None, p95_ms=None, max_ms=None)
    return LatencyStats(count=len(ordered), p50_ms=percentile(ordered, 50),
                        p95_ms=percentile(ordered, 95), max_ms=ordered[-1])


def summarize(events: Iterable[ev.Event], *, now: datetime | None = None,
              truncated: bool = False) -> CallSummary:
    """The summary of one call's events, given in commit order."""
    ordered = list(events)
    transcript = build_transcript(ordered)
    start = call_start(ordered)
    end: ev.CallTerminated | None = None
    hooks: list[ev.HookResult | ev.HookError] = []
    states: list[str] = []
    for event in ordered:
        kind = event_type(event)
        if kind == "state_transition":
            assert isinstance(event, ev.StateTransition)
            states.append(event.to_state)
        elif kind in _HOOK_TYPES:
            assert isinstance(event, ev.HookResult | ev.HookError)
            hooks.append(event)
        elif kind == "call_terminated":
            assert isinstance(event, ev.CallTerminated)
            end = event
    if start is None:
        duration = 0
    elif end is not None:
        duration = millis_between(start, end.timestamp)
    else:
        duration = millis_between(start, now if now is not None else ordered[-1].timestamp)
    caller = [t for t in transcript.turns if t.speaker == "caller"]
    agent = [t for t in transcript.turns if t.speaker == "agent"]
    return CallSummary(
        session_id=transcript.session_id,
        dialog_name=transcript.dialog_name,
        ended=end is not None,
        duration_ms=duration,
        turns=TurnCounts(caller=len(caller), agent=len(agent)),
        caller_talk_ms=sum(t.duration_ms or 0 for t in caller if t.kind == "speech"),
        agent_talk_ms=sum(t.duration_ms or 0 for t in agent),
        response_latency=latency_stats(
            t.response_latency_ms for t in caller if t.response_latency_ms is not None),
        barge_ins=sum(t.interrupted for t in agent),
        dtmf_count=sum(t.kind == "dtmf" for t in caller),
        hooks=HookStats(
            called=len(hooks),
            failed=sum(isinstance(e, ev.HookError) for e in hooks),
            latency=latency_stats(e.duration_ms for e in hooks),
        ),
        states=states,
        final_state=end.final_state if end is not None else None,
        reason=end.reason if end is not None else None,
        truncated=truncated,
    )
