"""The dialog runtime: one call, driven through its dialog's states.

``DialogCall.run`` turns a dialog file and a caller (behind a ``CallerChannel``)
into the call's events, committed one by one through an ``EventSink`` (a
``CallPublisher`` or the worker's ``CommitQueue``): ``call_started``, then per
state a ``state_transition``, the prompt's ``tts_started``/``tts_completed``,
the actions' ``action_executed`` and hooks' ``hook_result``/``hook_error``, the
caller's ``speech_partial``/``speech_final``/``dtmf_received``, media
``error``s, and always exactly one ``call_terminated`` at the end.

``seq`` is 1, 2, 3 ... without gaps: a number is used only once its event is
stored. Entering the initial state is itself a transition (``from_state`` "",
``trigger_event`` "call_started"), so the call hash's ``current_state`` is right
from the first moment and every ``from_state`` is the previous ``to_state``.

How a call ends (``call_terminated.reason``): a state without transitions ends
it ``normal``; ``hangup`` ends it ``system_hangup``, as does a worker that is
stopping; ``transfer`` ends it ``transfer``; the caller hanging up
``caller_hangup``; reaching the dialog's maximum duration ``timeout``; a fault
in the runtime itself ``error`` (after a fatal ``error`` event).
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import msgspec

from callhub.events import (
    ActionExecuted,
    CallStarted,
    CallTerminated,
    DtmfReceived,
    Error,
    Event,
    HookError,
    HookResult,
    Scalar,
    SpeechFinal,
    SpeechPartial,
    StateTransition,
    TerminationReason,
    TtsCompleted,
    TtsStarted,
)
from workers.commit.publisher import CommitOutcome, PublisherUnavailable
from workers.dialog.clock import CallEnds, DialogClock
from workers.dialog.hooks import HookClient, HookFailed, HookRequest
from workers.dialog.media import (
    CallerChannel,
    Final,
    MediaFault,
    NoInput,
    Partial,
    Pressed,
    Turn,
    TurnResult,
)
from workers.dialog.spec import (
    CallHook,
    Dialog,
    Hangup,
    Hold,
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
)

log = logging.getLogger("callhub.dialog")

# A dialog that loops without ever waiting (a hook failing at once, back to
# the same state) would otherwise spin until its maximum duration.
MAX_TRANSITIONS = 500
# Seconds of TTS per word, and a little lead-in: what a prompt takes to play.
SECONDS_PER_WORD = 0.38
PROMPT_LEAD_IN_S = 0.25

E = TypeVar("E", bound=Event)


class EventSink(Protocol):
    """Where a call's events go: committed in the order given, one at a time."""

    async def commit(self, event: Event) -> CommitOutcome: ...


class CommitRefused(Exception):
    """The commit script refused an event (``outcome.code`` says why)."""

    def __init__(self, outcome: CommitOutcome) -> None:
        super().__init__(f"{outcome.code}: {outcome.reason}")
        self.outcome = outcome


class DialogLoop(Exception):
    """The dialog went round more than ``MAX_TRANSITIONS`` times: a loop in the file."""


class CallContext(msgspec.Struct, frozen=True):
    """What the telephony side knows about a call when it connects."""

    session_id: str
    caller_id: str
    called_number: str
    sip_headers: dict[str, str] = {}


class CallSummary(msgspec.Struct):
    """How one call went, for the worker's tally and the tests."""

    session_id: str
    dialog_name: str
    reason: TerminationReason | None = None  # None: its call_terminated was not stored
    final_state: str = ""
    state_transitions: int = 0
    events: int = 0
    problem: str | None = None  # why the call could not be ended cleanly


def prompt_seconds(text: str) -> float:
    """How long TTS takes to speak ``text`` (dialog seconds)."""
    return PROMPT_LEAD_IN_S + SECONDS_PER_WORD * len(text.split())


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_][A-Za-z0-9_.-]*)\}")


def fill_prompt(text: str, variables: dict[str, Scalar]) -> str:
    """``{name}`` -> the call variable's value; unknown names stay as written."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(variables[name]) if variables.get(name) is not None else match.group(0)

    return _PLACEHOLDER.sub(value, text)


class DialogCall:
    """Runs one call of ``dialog`` from ``call_started`` to ``call_terminated``."""

    def __init__(
        self,
        dialog: Dialog,
        context: CallContext,
        channel: CallerChannel,
        sink: EventSink,
        hooks: HookClient,
        clock: DialogClock,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_started: Callable[[str], None] | None = None,
    ) -> None:
        self.dialog = dialog
        self.context = context
        self._channel = channel
        self._sink = sink
        self._hooks = hooks
        self._clock = clock
        self._now = now
        self._on_started = on_started
        self.seq = 0
        self.state = ""
        self.transitions = 0
        self.variables: dict[str, Scalar] = {}
        self._started_at: datetime | None = None
        self.summary = CallSummary(context.session_id, dialog.name)

    # -- events ------------------------------------------------------------

    async def _emit(self, kind: type[E], **fields: Any) -> E:
        """Commit the call's next event; raises ``CommitRefused`` if it was not stored."""
        seq = self.seq + 1
        event = kind(
            event_id=f"evt-{uuid.uuid4()}",
            session_id=self.context.session_id,
            timestamp=self._now(),
            seq=seq,
            **fields,
        )
        outcome = await self._sink.commit(event)
        if not outcome.stored:
            raise CommitRefused(outcome)
        self.seq = seq
        self.summary.events += 1
        return event

    # -- the call ----------------------------------------------------------

    async def run(self) -> CallSummary:
        """Run the call to its end; never raises for what happens inside the call.

        A refused ``call_started`` means there is no call (``summary.problem``
        says why). A Redis outage (``PublisherUnavailable``, raised) leaves the
        call without its ``call_terminated``: then the worker's lease runs out
        and a reaper ends the call (DESIGN I7).
        """
        try:
            started = await self._emit(
                CallStarted,
                caller_id=self.context.caller_id,
                called_number=self.context.called_number,
                dialog_name=self.dialog.name,
                sip_headers=self.context.sip_headers,
            )
        except CommitRefused as refused:  # e.g. already_started: the session id is taken
            self.summary.problem = f"call_started refused: {refused}"
            return self.summary
        self._started_at = started.timestamp
        if self._on_started is not None:
            self._on_started(self.context.session_id)
        reason: TerminationReason
        try:
            await self._converse()
            reason = "normal"
        except CallEnds as end:
            reason = end.reason
        except CommitRefused as refused:
            if refused.outcome.code == "call_ended":  # a reaper ended it first
                self.summary.problem = "ended elsewhere"
                return self.summary
            reason = await self._fault("commit_refused", str(refused))
        except PublisherUnavailable:
            raise  # nothing can be committed: the lease runs out, a reaper ends the call
        except DialogLoop as loop:
            log.warning("call %s: %s", self.context.session_id, loop)
            reason = await self._fault("dialog_loop", str(loop))
        except Exception as error:  # a bug or a broken dependency: end the call, say why
            log.exception("call %s failed", self.context.session_id)
            reason = await self._fault("dialog_failure", f"{type(error).__name__}: {error}")
        await self._terminate(reason)
        return self.summary

    async def _fault(self, code: str, message: str) -> TerminationReason:
        with contextlib.suppress(CommitRefused):
            await self._emit(Error, code=code, message=message[:2000],
                             component="dialog_runtime", fatal=True)
        return "error"

    async def _terminate(self, reason: TerminationReason) -> None:
        assert self._started_at is not None
        seconds = int((self._now() - self._started_at).total_seconds())
        try:
            await self._emit(
                CallTerminated,
                reason=reason,
                duration_seconds=max(0, seconds),
                state_transitions=self.transitions,
                final_state=self.state,
            )
        except CommitRefused as refused:
            self.summary.problem = f"call_terminated refused: {refused}"
            return
        self.summary.reason = reason
        self.summary.final_state = self.state
        self.summary.state_transitions = self.transitions

    async def _converse(self) -> None:
        """Enter states until one ends the call (by ``CallEnds``, or having no way on)."""
        to, trigger = self.dialog.initial_state, "call_started"
        while True:
            if self.transitions >= MAX_TRANSITIONS:
                raise DialogLoop(f"more than {MAX_TRANSITIONS} state transitions in one call: "
                                 f"the dialog loops (last state {self.state!r})")
            self._clock.check()
            await self._emit(StateTransition, from_state=self.state, to_state=to,
                             trigger_event=trigger, dialog_name=self.dialog.name)
            self.state = to
            self.transitions += 1
            following = await self._run_state(self.dialog.states[to])
            if following is None:
                return
            to, trigger = following

    async def _run_state(self, state: StateSpec) -> tuple[str, str] | None:
        """Prompt, actions, then the caller's input: the next (state, trigger), or None."""
        turn = Turn(self.state, state, self.dialog.timeout_in(state))
        barged_in = False
        if state.prompt is not None:
            barged_in = await self._play(state.prompt, self.dialog.voice, turn)
        for action in state.actions:
            if isinstance(action, Play):
                if barged_in:
                    continue  # the caller is talking: the rest of the audio is skipped
                await self._emit(ActionExecuted, action="play", state=self.state,
                                 parameters={"text": action.text})
                barged_in = await self._play(action.text, action.voice or self.dialog.voice,
                                             turn)
            elif isinstance(action, CallHook):
                following = await self._call_hook(action.hook, state)
                if following is not None:
                    return following
            else:
                await self._act(action)
        if not state.listens:
            return None
        while True:
            heard = await self._listen(turn)
            following = self._choose(state, heard)
            if following is not None:
                return following
            # Nothing of this state matched what was heard: listen again.

    async def _act(self, action: SetVariable | Hold | Resume | Transfer | Hangup) -> None:
        if isinstance(action, SetVariable):
            self.variables[action.name] = action.value
            await self._emit(ActionExecuted, action="set_variable", state=self.state,
                             parameters={"name": action.name},
                             variables={action.name: action.value})
        elif isinstance(action, Hold):
            parameters: dict[str, Scalar] = {"seconds": action.seconds}
            if action.queue is not None:
                parameters["queue"] = action.queue
            await self._emit(ActionExecuted, action="hold", state=self.state,
                             parameters=parameters)
            await self._clock.wait(action.seconds)
        elif isinstance(action, Resume):
            await self._emit(ActionExecuted, action="resume", state=self.state)
        elif isinstance(action, Transfer):
            await self._emit(ActionExecuted, action="transfer", state=self.state,
                             parameters={"target": action.target})
            await self._clock.wait(action.seconds)
            raise CallEnds("transfer")
        else:
            await self._emit(ActionExecuted, action="hangup", state=self.state)
            raise CallEnds("system_hangup")

    async def _play(self, text: str, voice: str, turn: Turn) -> bool:
        """Speak ``text``; True if the caller barged in."""
        spoken = fill_prompt(text, self.variables)
        utterance_id = f"utt-{uuid.uuid4().hex}"
        await self._emit(TtsStarted, utterance_id=utterance_id, text=spoken, voice=voice,
                         state=self.state)
        try:
            playback = await self._channel.play(spoken, voice, turn)
        except CallEnds:
            # Every tts_started gets its tts_completed, even when the call ends mid-prompt.
            await self._emit(TtsCompleted, utterance_id=utterance_id,
                             duration_ms=0, interrupted=True)
            raise
        await self._emit(TtsCompleted, utterance_id=utterance_id,
                         duration_ms=playback.duration_ms, interrupted=playback.interrupted)
        return playback.interrupted

    async def _listen(self, turn: Turn) -> TurnResult:
        # The channel's iterator is read to its end (its result is its last
        # item), so it is always finished, never left suspended.
        result: TurnResult = NoInput()
        async for heard in self._channel.listen(turn):
            if isinstance(heard, Partial):
                await self._emit(SpeechPartial, transcript=heard.transcript,
                                 confidence=heard.confidence, language=self.dialog.language,
                                 duration_ms=heard.duration_ms)
                continue
            if isinstance(heard, Final):
                await self._emit(SpeechFinal, transcript=heard.transcript,
                                 confidence=heard.confidence, language=self.dialog.language,
                                 duration_ms=heard.duration_ms, segments=heard.segments)
            elif isinstance(heard, Pressed):
                await self._emit(DtmfReceived, digit=heard.digit, duration_ms=heard.duration_ms)
            elif isinstance(heard, MediaFault):
                await self._emit(Error, code=heard.code, message=heard.message,
                                 component=heard.component, fatal=False)
            result = heard
        return result

    def _choose(self, state: StateSpec, heard: TurnResult) -> tuple[str, str] | None:
        """The transition ``heard`` fires in ``state``: (to, trigger_event), or None."""
        if isinstance(heard, Final):
            for transition in state.transitions:
                if isinstance(transition, OnIntent) and self.dialog.intents[
                    transition.intent
                ].matches(heard.transcript):
                    return transition.to, "speech_final"
            trigger = "speech_final"
        elif isinstance(heard, Pressed):
            for transition in state.transitions:
                if isinstance(transition, OnDtmf) and transition.digit in (None, heard.digit):
                    return transition.to, "dtmf_received"
            trigger = "dtmf_received"
        else:  # nothing usable heard: no input, or the media side failed
            for transition in state.transitions:
                if isinstance(transition, OnTimeout):
                    return transition.to, "timeout" if isinstance(heard, NoInput) else "error"
            return None
        for transition in state.transitions:
            if isinstance(transition, OnNoMatch):
                return transition.to, trigger
        return None

    async def _call_hook(self, name: str, state: StateSpec) -> tuple[str, str] | None:
        hook = self.dialog.hooks[name]
        await self._emit(ActionExecuted, action="hook", state=self.state,
                         parameters={"hook": name})
        request = HookRequest(
            hook=name, session_id=self.context.session_id, dialog_name=self.dialog.name,
            state=self.state, caller_id=self.context.caller_id,
            called_number=self.context.called_number, variables=dict(self.variables),
        )
        outcome = await self._hooks.call(
            hook, request, timeout_s=self._clock.pace.real_timeout(hook.timeout_s)
        )
        self._clock.advance(outcome.duration_ms / 1000)
        if isinstance(outcome, HookFailed):
            await self._emit(HookError, hook_name=name, state=self.state,
                             error_kind=outcome.kind, message=outcome.message[:2000],
                             duration_ms=outcome.duration_ms, status_code=outcome.status_code)
            for transition in state.transitions:
                if isinstance(transition, OnHookFailure) and transition.hook in (None, name):
                    return transition.to, "hook_error"
            return None
        await self._emit(HookResult, hook_name=name, state=self.state,
                         status_code=outcome.status_code, duration_ms=outcome.duration_ms,
                         variables=outcome.variables)
        for variable, value in outcome.variables.items():  # null removes, as in the call hash
            if value is None:
                self.variables.pop(variable, None)
            else:
                self.variables[variable] = value
        for transition in state.transitions:
            if isinstance(transition, OnHookSuccess) and transition.hook in (None, name):
                return transition.to, "hook_result"
        return None
