"""Calls as conversations: a builder of one call's events, and a hypothesis
strategy of whole calls, for the transcript and summary tests.

``Conversation`` numbers the events (``seq``) and stamps them at times given
in milliseconds from the call's start, so a test says what happened when and
knows what the transcript must say.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from callhub import events as ev
from tests.support.strategies import T0, texts


class Conversation:
    """One call's events, in commit order, built step by step."""

    def __init__(self, session_id: str = "call-abc-123", start: datetime = T0,
                 dialog: str = "helpdesk", event_ids: str = "{session_id}-{seq}") -> None:
        self.session_id = session_id
        self.event_ids = event_ids
        self.start = start
        self.dialog = dialog
        self.events: list[ev.Event] = []
        self._utterances = 0
        self.add(ev.CallStarted, 0, caller_id="+15551234567", called_number="+18001234567",
                 dialog_name=dialog)

    def at(self, ms: int) -> datetime:
        return self.start + timedelta(milliseconds=ms)

    def add(self, cls: type[ev.Event], ms: int, **fields: Any) -> ev.Event:
        seq = len(self.events) + 1
        event_id = self.event_ids.format(session_id=self.session_id, seq=seq)
        event = cls(event_id=event_id, session_id=self.session_id,
                    timestamp=self.at(ms), seq=seq, **fields)
        self.events.append(event)
        return event

    def transition(self, ms: int, to_state: str, from_state: str = "") -> None:
        self.add(ev.StateTransition, ms, from_state=from_state, to_state=to_state,
                 trigger_event="speech_final", dialog_name=self.dialog)

    def agent(self, ms: int, text: str, played_ms: int | None = None,
              interrupted: bool = False, completed_at: int | None = None) -> str:
        """A prompt starting at ``ms``; completed (``played_ms`` later, or at
        ``completed_at``) unless ``played_ms`` is None."""
        self._utterances += 1
        utterance = f"utt-{self._utterances}"
        self.add(ev.TtsStarted, ms, utterance_id=utterance, text=text, voice="en-US-1",
                 state="menu")
        if played_ms is not None:
            self.complete(utterance, completed_at if completed_at is not None
                          else ms + played_ms, played_ms, interrupted)
        return utterance

    def complete(self, utterance: str, ms: int, played_ms: int, interrupted: bool) -> None:
        self.add(ev.TtsCompleted, ms, utterance_id=utterance, duration_ms=played_ms,
                 interrupted=interrupted)

    def caller(self, ends_ms: int, text: str, duration_ms: int, confidence: float = 0.9,
               partials: int = 0, segments: list[ev.Segment] | None = None) -> None:
        """The caller speaking for ``duration_ms`` until ``ends_ms`` (word timings
        spread over the words unless given), after ``partials`` interim transcripts."""
        words = text.split()
        for n in range(partials):
            self.add(ev.SpeechPartial, ends_ms - duration_ms + (n + 1) * duration_ms
                     // (partials + 1), transcript=" ".join(words[: n + 1]),
                     confidence=0.6, language="en", duration_ms=duration_ms // 2)
        step = duration_ms // max(1, len(words))
        if segments is None:
            segments = [ev.Segment(word, n * step, n * step + step // 2, confidence)
                        for n, word in enumerate(words)]
        self.add(ev.SpeechFinal, ends_ms, transcript=text, confidence=confidence,
                 language="en", duration_ms=duration_ms, segments=segments)

    def press(self, ends_ms: int, digit: ev.Digit, duration_ms: int = 120) -> None:
        self.add(ev.DtmfReceived, ends_ms, digit=digit, duration_ms=duration_ms)

    def hook(self, ms: int, name: str, duration_ms: int, failed: bool = False) -> None:
        if failed:
            self.add(ev.HookError, ms, hook_name=name, state="menu", error_kind="timeout",
                     message="timed out", duration_ms=duration_ms)
        else:
            self.add(ev.HookResult, ms, hook_name=name, state="menu", status_code=200,
                     duration_ms=duration_ms)

    def end(self, ms: int, reason: ev.TerminationReason = "normal",
            final_state: str = "goodbye") -> None:
        transitions = sum(isinstance(e, ev.StateTransition) for e in self.events)
        self.add(ev.CallTerminated, ms, reason=reason, duration_seconds=ms // 1000,
                 state_transitions=transitions, final_state=final_state)


def helpdesk_call(session_id: str = "call-abc-123") -> Conversation:
    """A conversation whose every figure is known (times in ms from the start)."""
    call = Conversation(session_id)
    call.transition(0, "greeting")
    call.agent(300, "Welcome to the helpdesk. How can I help?", played_ms=2500)
    call.caller(5000, "I need a password reset", 1800, confidence=0.94, partials=3)
    call.agent(5650, "Sure. Can I have your account number?", played_ms=900, interrupted=True)
    call.caller(8000, "it is four two", 1300, confidence=0.8)  # barged in at 6.7 s
    call.transition(8050, "lookup", "greeting")
    call.hook(8100, "lookup", 420)
    call.hook(8200, "crm", 2000, failed=True)
    call.agent(8700, "Thanks. Press 1 to confirm.", played_ms=1600)
    call.press(11_000, "1", 120)
    call.agent(11_300, "Done: a reset link is on its way.", played_ms=2000)
    call.caller(14_900, "thanks", 500, confidence=0.99)  # the agent never answers this
    call.end(15_500, "caller_hangup", "goodbye")
    return call


# ---------------------------------------------------------------------------
# Whole calls for properties

_words = st.lists(st.sampled_from(["yes", "no", "billing", "reset", "my", "password", "um"]),
                  min_size=1, max_size=6).map(" ".join)
# Steps forward in time, and now and then one back (a clock step on the worker).
_gaps = st.integers(0, 5000) | st.integers(-2000, -1)


@st.composite
def conversations(draw: st.DrawFn, hostile_text: bool = False) -> Conversation:
    """A call of random turns: prompts (completed, interrupted or never
    reported), speech (with partials), key presses, hooks, transitions, and
    maybe its end."""
    call = Conversation(f"c-{draw(st.integers(0, 10**6))}")
    text = texts if hostile_text else _words
    now = 0
    open_utterances: list[str] = []
    for _ in range(draw(st.integers(0, 30))):
        now = max(0, now + draw(_gaps))
        kind = draw(st.sampled_from(["agent", "caller", "press", "hook", "transition",
                                     "complete"]))
        if kind == "agent":
            played = draw(st.none() | st.integers(0, 8000))
            utterance = call.agent(now, draw(text), played, draw(st.booleans()))
            if played is None:
                open_utterances.append(utterance)
        elif kind == "caller":
            duration = draw(st.integers(0, 6000))
            call.caller(now + duration, draw(text), duration,
                        draw(st.floats(0, 1, allow_nan=False)), draw(st.integers(0, 3)))
            now += duration
        elif kind == "press":
            call.press(now, draw(st.sampled_from(list("0123456789*#"))),
                       draw(st.integers(0, 300)))
        elif kind == "hook":
            call.hook(now, draw(st.sampled_from(["lookup", "crm"])), draw(st.integers(0, 9000)),
                      draw(st.booleans()))
        elif kind == "transition":
            call.transition(now, draw(st.sampled_from(["greeting", "menu", "billing",
                                                       "goodbye"])))
        elif open_utterances:
            utterance = open_utterances.pop(draw(st.integers(0, len(open_utterances) - 1)))
            call.complete(utterance, now, draw(st.integers(0, 8000)), draw(st.booleans()))
    if draw(st.booleans()):
        call.end(now + draw(st.integers(0, 3000)),
                 draw(st.sampled_from(["normal", "caller_hangup", "error"])))
    return call
