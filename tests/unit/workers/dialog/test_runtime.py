"""The dialog FSM over scripted callers: properties that hold for any caller, and
the spec's helpdesk call played out. Events go to an in-memory sink that
validates each one; hooks answer through httpx's mock transport (the real HTTP
round trips are in tests/integration/test_hooks.py)."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callhub import events as ev
from tests.support.polling import async_wait_until
from workers.commit.publisher import CommitOutcome
from workers.dialog.clock import DialogClock, Pace
from workers.dialog.hooks import HookClient
from workers.dialog.runtime import MAX_TRANSITIONS, CallContext, CallSummary, DialogCall
from workers.dialog.spec import (
    CallHook,
    Dialog,
    Hangup,
    Hold,
    HookSpec,
    IntentSpec,
    OnDtmf,
    OnHookFailure,
    OnHookSuccess,
    OnIntent,
    OnNoMatch,
    OnTimeout,
    Play,
    Resume,
    SetVariable,
    StateSpec,
    Transfer,
    parse_dialog,
)
from workers.simulator.bundled_dialogs import bundled_dialogs
from workers.simulator.callers import (
    MUMBLES,
    CallerStep,
    Fault,
    HangUp,
    Press,
    Say,
    ScriptedCaller,
    Silent,
    SimulatedChannel,
)

DIALOGS = {d.name: d for d in bundled_dialogs()}
HookBehaviour = Literal["ok", "404", "timeout", "garbage"]


class RecordingSink:
    """Stores every event after checking it against the schema, like the publisher."""

    def __init__(self, refuse: Callable[[ev.Event], str | None] = lambda _: None) -> None:
        self.events: list[ev.AnyEvent] = []
        self._refuse = refuse

    async def commit(self, event: ev.Event) -> CommitOutcome:
        code = self._refuse(event)
        if code:
            return CommitOutcome(event, "rejected", code=code, reason="refused by the test")
        decoded = ev.decode_event(ev.encode_event(event))  # raises if invalid
        self.events.append(decoded)
        return CommitOutcome(event, "committed", entry_id=f"0-{len(self.events)}")


def back_office(behaviour: HookBehaviour) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if behaviour == "timeout":
            raise httpx.ReadTimeout("too slow", request=request)
        if behaviour == "404":
            return httpx.Response(404, json={"error": "no such account"})
        if behaviour == "garbage":
            return httpx.Response(200, text="<html>")
        return httpx.Response(200, json={"variables": {"customer_name": "Jane",
                                                       "balance": "12.50",
                                                       "due_date": "June 30"}})

    return httpx.MockTransport(answer)


async def play_call(
    dialog: Dialog,
    steps: Sequence[CallerStep],
    *,
    hooks: HookBehaviour = "ok",
    speed: float = math.inf,
    seed: int = 1,
    sink: RecordingSink | None = None,
    pace: Pace | None = None,
) -> tuple[CallSummary, list[ev.AnyEvent]]:
    import random

    sink = sink or RecordingSink()
    pace = pace or Pace(speed)
    clock = DialogClock(pace, dialog.max_duration_s)
    channel = SimulatedChannel(ScriptedCaller(steps), random.Random(seed), clock)
    async with httpx.AsyncClient(transport=back_office(hooks)) as http:
        call = DialogCall(dialog, CallContext("call-abc-123", "+15551234567", "+18001234567"),
                          channel, sink, HookClient(http, "http://back-office"), clock)
        summary = await call.run()
    return summary, sink.events


def of_type(events: Sequence[ev.Event], kind: type[ev.Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# ---------------------------------------------------------------------------
# Properties over any caller


words = st.sampled_from(
    sorted({w for d in DIALOGS.values() for i in d.intents.values() for w in i.keywords}
           | {"hello", "um", "please", "account"})
)
utterances = st.one_of(
    st.sampled_from(sorted({x for d in DIALOGS.values() for i in d.intents.values()
                            for x in i.examples} | set(MUMBLES))),
    st.lists(words, min_size=1, max_size=6).map(" ".join),
)
think = st.floats(min_value=0, max_value=12, allow_nan=False)
steps = st.one_of(
    st.builds(Say, utterances, think, st.booleans()),
    st.builds(Press, st.sampled_from(list(ev.Digit.__args__)), think, st.booleans()),
    st.just(Silent()),
    st.builds(HangUp, st.booleans()),
    st.builds(Fault, think),
)


def check_call(events: Sequence[ev.AnyEvent], dialog: Dialog, summary: CallSummary) -> None:
    assert isinstance(events[0], ev.CallStarted)
    ends = of_type(events, ev.CallTerminated)
    assert len(ends) == 1 and events[-1] is ends[0], "exactly one call_terminated, last"
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "seq 1, 2, 3 ... no gaps"

    transitions = of_type(events, ev.StateTransition)
    assert transitions[0].from_state == "" and transitions[0].to_state == dialog.initial_state
    for before, after in itertools.pairwise(transitions):
        assert after.from_state == before.to_state, "each from_state is the previous to_state"
    assert all(t.dialog_name == dialog.name and t.to_state in dialog.states for t in transitions)
    end = ends[0]
    assert end.final_state == transitions[-1].to_state
    assert end.state_transitions == len(transitions)
    assert summary.reason == end.reason

    playing: str | None = None  # every tts_started has its tts_completed before the next
    for event in events:
        if isinstance(event, ev.TtsStarted):
            assert playing is None
            playing = event.utterance_id
        elif isinstance(event, ev.TtsCompleted):
            assert playing == event.utterance_id
            playing = None
    assert playing is None

    partial: str | None = None  # partials grow word by word into the final transcript
    for event in events:
        if isinstance(event, ev.SpeechPartial):
            assert partial is None or event.transcript.startswith(partial)
            partial = event.transcript
        elif isinstance(event, ev.SpeechFinal):
            assert partial is not None and event.transcript.startswith(partial)
            assert " ".join(s.text for s in event.segments) == event.transcript
            assert all(a.end_ms <= b.start_ms for a, b in zip(event.segments,
                                                              event.segments[1:], strict=False))
            partial = None
        elif isinstance(event, ev.CallTerminated):
            # A call cut off mid-utterance (hang-up, max duration) ends with
            # its last partial: the recognizer never heard the end of it.
            assert partial is None or event.reason != "normal"
        else:
            assert partial is None, "nothing comes between a partial and its final"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dialog=st.sampled_from(sorted(DIALOGS)),
    script=st.lists(steps, max_size=10),
    hooks=st.sampled_from(["ok", "404", "timeout", "garbage"]),
    seed=st.integers(0, 2**32),
)
def test_any_caller_gets_a_consistent_call_that_ends_once(
    dialog: str, script: list[CallerStep], hooks: HookBehaviour, seed: int
) -> None:
    summary, events = asyncio.run(play_call(DIALOGS[dialog], script, hooks=hooks, seed=seed))
    check_call(events, DIALOGS[dialog], summary)
    # The same caller and seed make the same call (ids and times aside).
    _, again = asyncio.run(play_call(DIALOGS[dialog], script, hooks=hooks, seed=seed))
    assert shape(again) == shape(events)


def shape(events: Sequence[ev.Event]) -> list[dict[str, Any]]:
    """An event without what is real time or random ids (hook round trips are real)."""
    varying = {"event_id", "timestamp", "utterance_id", "duration_seconds"}
    return [{k: v for k, v in msgspec.to_builtins(e).items()
             if k not in varying and not (k == "duration_ms" and isinstance(e, ev.HookResult
                                                                              | ev.HookError))}
            for e in events]


# ---------------------------------------------------------------------------
# Particular calls


async def test_the_spec_helpdesk_call_resets_a_password_and_says_goodbye() -> None:
    summary, events = await play_call(DIALOGS["helpdesk"], [
        Say("I need a password reset"), Say("yes"), Say("no thanks"),
    ])
    path = [(t.from_state, t.to_state, t.trigger_event)
            for t in of_type(events, ev.StateTransition)]
    assert path == [
        ("", "greeting", "call_started"),
        ("greeting", "collect_info", "speech_final"),
        ("collect_info", "lookup_account", "speech_final"),
        ("lookup_account", "reset_password", "hook_result"),
        ("reset_password", "goodbye", "speech_final"),
    ]
    end = events[-1]
    assert isinstance(end, ev.CallTerminated)
    assert (end.reason, end.final_state, end.state_transitions) == ("normal", "goodbye", 5)
    final = of_type(events, ev.SpeechFinal)[0]
    assert final.transcript == "I need a password reset" and final.language == "en"
    assert [s.text for s in final.segments] == ["I", "need", "a", "password", "reset"]
    assert [p.transcript for p in of_type(events, ev.SpeechPartial)][:5] == [
        "I", "I need", "I need a", "I need a password", "I need a password reset"]
    patches = [ev.variables_patch(e) for e in events if ev.variables_patch(e)]
    assert {"intent": "password_reset"} in patches
    assert any(p.get("customer_name") == "Jane" for p in patches)
    spoken = [t.text for t in of_type(events, ev.TtsStarted)]
    assert any(text.startswith("Thanks, Jane.") for text in spoken), spoken
    assert summary.reason == "normal"


async def test_a_failed_lookup_holds_resumes_and_transfers() -> None:
    summary, events = await play_call(DIALOGS["helpdesk"], [Say("I forgot my password"),
                                                            Say("yes")], hooks="404")
    error = of_type(events, ev.HookError)[0]
    assert (error.hook_name, error.error_kind, error.status_code) == ("lookup_account",
                                                                     "http_status", 404)
    actions = [a.action for a in of_type(events, ev.ActionExecuted)]
    assert actions[-5:] == ["set_variable", "hold", "resume", "play", "transfer"]
    hold = next(a for a in of_type(events, ev.ActionExecuted) if a.action == "hold")
    assert hold.parameters["queue"] == "tier2" and hold.state == "transfer_wait"
    assert summary.reason == "transfer"


@pytest.mark.parametrize(("behaviour", "kind"), [("timeout", "timeout"),
                                                 ("garbage", "invalid_response")])
async def test_hook_failures_are_reported_by_kind(behaviour: HookBehaviour, kind: str) -> None:
    _, events = await play_call(DIALOGS["billing_menu"], [Press("1")], hooks=behaviour)
    assert [e.error_kind for e in of_type(events, ev.HookError)] == [kind]


async def test_a_caller_who_barges_in_cuts_the_prompt_short() -> None:
    _, events = await play_call(DIALOGS["billing_menu"], [Press("1", barge_in=True)])
    first_prompt = of_type(events, ev.TtsCompleted)[0]
    assert first_prompt.interrupted
    after = events[events.index(first_prompt) + 1]
    assert isinstance(after, ev.DtmfReceived) and after.digit == "1"


async def test_a_caller_who_hangs_up_during_the_prompt() -> None:
    summary, events = await play_call(DIALOGS["helpdesk"], [HangUp(during_prompt=True)])
    assert [type(e).__name__ for e in events] == [
        "CallStarted", "StateTransition", "TtsStarted", "TtsCompleted", "CallTerminated"]
    assert of_type(events, ev.TtsCompleted)[0].interrupted
    assert summary.reason == "caller_hangup"


async def test_silence_follows_the_timeout_transitions() -> None:
    _, events = await play_call(DIALOGS["helpdesk"], [Silent(), Silent()])
    path = [t.to_state for t in of_type(events, ev.StateTransition)]
    assert path == ["greeting", "clarify", "goodbye"]
    assert of_type(events, ev.StateTransition)[1].trigger_event == "timeout"


async def test_a_recogniser_fault_is_an_error_event_and_counts_as_no_input() -> None:
    _, events = await play_call(DIALOGS["helpdesk"], [Fault()])
    error = of_type(events, ev.Error)[0]
    assert (error.code, error.component, error.fatal) == ("asr_unavailable", "asr", False)
    assert of_type(events, ev.StateTransition)[1].trigger_event == "error"


async def test_a_call_ends_with_timeout_at_its_maximum_duration() -> None:
    dialog = parse_dialog("""
        name = "loop"
        initial_state = "ask"
        max_duration = "30s"
        no_input_timeout = "4s"
        [states.ask]
        prompt = "Hello?"
        [[states.ask.transitions]]
        on = "timeout"
        to = "ask"
    """)
    summary, events = await play_call(dialog, [Silent()] * 100)
    assert summary.reason == "timeout"
    assert isinstance(events[-1], ev.CallTerminated)
    assert 4 <= len(of_type(events, ev.StateTransition)) <= 8


async def test_a_stopping_worker_ends_its_calls_with_system_hangup() -> None:
    pace = Pace(50.0)  # 50x: a 6 s prompt takes ~0.1 s
    sink = RecordingSink()
    task = asyncio.create_task(play_call(DIALOGS["helpdesk"], [Silent()] * 10, pace=pace,
                                         sink=sink))
    # The stop comes to a call under way: it has started, and not ended.
    await async_wait_until(lambda: sink.events, timeout=5, what="the call's first event")
    assert isinstance(sink.events[0], ev.CallStarted)
    assert not task.done() and not of_type(sink.events, ev.CallTerminated)
    pace.stopping.set()
    summary, events = await asyncio.wait_for(task, 5)
    assert summary.reason == "system_hangup"
    assert len(of_type(events, ev.CallTerminated)) == 1


async def test_a_refused_event_uses_no_seq_and_ends_the_call_with_an_error() -> None:
    sink = RecordingSink(lambda e: "invalid" if isinstance(e, ev.TtsStarted) else None)
    summary, events = await play_call(DIALOGS["helpdesk"], [Say("agent")], sink=sink)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    error = of_type(events, ev.Error)[0]
    assert error.fatal and error.code == "commit_refused"
    assert summary.reason == "error"


async def test_a_call_ended_elsewhere_stops_without_a_second_end() -> None:
    sink = RecordingSink(lambda e: "call_ended" if isinstance(e, ev.TtsStarted) else None)
    summary, events = await play_call(DIALOGS["helpdesk"], [Say("agent")], sink=sink)
    assert not of_type(events, ev.CallTerminated)
    assert summary.reason is None and summary.problem == "ended elsewhere"


async def test_a_refused_call_started_is_no_call() -> None:
    sink = RecordingSink(lambda e: "already_started" if isinstance(e, ev.CallStarted) else None)
    summary, events = await play_call(DIALOGS["helpdesk"], [Say("agent")], sink=sink)
    assert events == [] and summary.reason is None
    assert summary.problem is not None and "already_started" in summary.problem


# ---------------------------------------------------------------------------
# Properties over any dialog, not only the bundled ones

STATE_NAMES = [f"s{n}" for n in range(5)]
to_states = st.sampled_from(STATE_NAMES)
actions = st.one_of(
    st.builds(Play, st.sampled_from(["Hello.", "Please wait {name}."])),
    st.builds(SetVariable, st.just("name"), st.sampled_from(["Ann", 7, True])),
    st.builds(CallHook, st.sampled_from(["h0", "h1"])),
    st.builds(Hold, st.none(), st.floats(0, 30)),
    st.just(Resume()),
    st.builds(Transfer, st.just("+18005550100"), st.floats(0, 5)),
    st.just(Hangup()),
)
transitions = st.one_of(
    st.builds(OnIntent, st.sampled_from(["yes", "no"]), to_states),
    st.builds(OnDtmf, to_states, st.sampled_from([None, "1", "2", "#"])),
    st.builds(OnTimeout, to_states),
    st.builds(OnNoMatch, to_states),
    st.builds(OnHookSuccess, to_states, st.sampled_from([None, "h0", "h1"])),
    st.builds(OnHookFailure, to_states, st.sampled_from([None, "h0"])),
)
state_specs = st.builds(
    StateSpec,
    prompt=st.one_of(st.none(), st.just("What would you like, {name}?")),
    actions=st.lists(actions, max_size=3),
    transitions=st.lists(transitions, max_size=4),
)
dialogs = st.builds(
    Dialog,
    name=st.just("generated"),
    initial_state=to_states,
    states=st.fixed_dictionaries({name: state_specs for name in STATE_NAMES}),
    max_duration=st.sampled_from(["20s", "60s"]),
    intents=st.just({"yes": IntentSpec(keywords=["yes"], examples=["yes"]),
                     "no": IntentSpec(keywords=["no"], examples=["no"])}),
    hooks=st.just({"h0": HookSpec(url="/h0"), "h1": HookSpec(url="/h1")}),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialog=dialogs, script=st.lists(steps, max_size=8),
       hooks=st.sampled_from(["ok", "404", "timeout"]), seed=st.integers(0, 2**32))
def test_any_dialog_with_any_caller_ends_once_with_a_consistent_chain(
    dialog: Dialog, script: list[CallerStep], hooks: HookBehaviour, seed: int
) -> None:
    summary, events = asyncio.run(play_call(dialog, script, hooks=hooks, seed=seed))
    check_call(events, dialog, summary)
    assert summary.reason in ("normal", "caller_hangup", "system_hangup", "transfer",
                              "timeout", "error")
    if summary.reason == "error":  # only a dialog that loops without waiting gets here
        assert of_type(events, ev.Error)[-1].code == "dialog_loop"


async def test_a_dialog_that_loops_without_waiting_ends_with_an_error() -> None:
    dialog = parse_dialog("""
        name = "spin"
        initial_state = "again"
        [hooks.h]
        url = "/h"
        [states.again]
        actions = [{ action = "hook", hook = "h" }]
        [[states.again.transitions]]
        on = "hook_failure"
        to = "again"
    """)
    summary, events = await play_call(dialog, [], hooks="404")
    assert summary.reason == "error"
    error = of_type(events, ev.Error)[-1]
    assert error.fatal and error.code == "dialog_loop"
    assert len(of_type(events, ev.StateTransition)) == MAX_TRANSITIONS
