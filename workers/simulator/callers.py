"""Simulated callers: what they do each turn, and the channel that makes it sound real.

A caller is a source of ``CallerStep``s, one per listening turn of the dialog:

- ``Say``: speak a sentence (after thinking ``think_s``); heard as partial
  transcripts growing word by word, then a final one with word segments,
  timings and confidences;
- ``Press``: press a key;
- ``Silent``: say nothing (the turn times out);
- ``HangUp``: hang up (during the prompt, or while the dialog listens);
- ``Fault``: the recogniser fails this turn (an ``error`` event).

``barge_in`` on ``Say``/``Press`` starts the input while the state's prompt is
still playing: the prompt is cut (``tts_completed.interrupted``).

``ScriptedCaller`` plays a fixed list of steps (tests, hypothesis), then hangs
up. ``RandomCaller`` decides each turn from what the dialog's current state
accepts (mostly its first-listed answer: the main path), with a seeded
``random.Random``: the same seed and dialog give the
same call. ``SimulatedChannel`` turns steps into what a recogniser would hear,
spending dialog time on a ``DialogClock`` (scaled by the worker's speed).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeAlias

import msgspec

from callhub.events import Digit, Segment
from workers.dialog.clock import CallEnds, DialogClock
from workers.dialog.media import (
    Final,
    Heard,
    MediaFault,
    NoInput,
    Partial,
    Playback,
    Pressed,
    Turn,
)
from workers.dialog.runtime import prompt_seconds
from workers.dialog.spec import Dialog, OnDtmf, OnIntent

DIGITS: tuple[Digit, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#")
# What callers say when they say something no dialog expects.
MUMBLES = (
    "um hello", "can you hear me", "hang on a second", "what was that again",
    "sorry I was talking to someone else", "the weather is lovely today",
    "my account number is four four one two", "it's about my order from last week",
)


class Say(msgspec.Struct, frozen=True, tag=True):
    text: str
    think_s: float = 0.8
    barge_in: bool = False


class Press(msgspec.Struct, frozen=True, tag=True):
    digit: Digit
    think_s: float = 1.0
    barge_in: bool = False


class Silent(msgspec.Struct, frozen=True, tag=True):
    pass


class HangUp(msgspec.Struct, frozen=True, tag=True):
    during_prompt: bool = False


class Fault(msgspec.Struct, frozen=True, tag=True):
    think_s: float = 0.5


CallerStep: TypeAlias = Say | Press | Silent | HangUp | Fault


class Caller(Protocol):
    def next_step(self, turn: Turn) -> CallerStep:
        """What the caller does in ``turn``."""
        ...


class ScriptedCaller:
    """Does exactly ``steps``, one per turn, then hangs up."""

    def __init__(self, steps: Sequence[CallerStep]) -> None:
        self._steps = list(steps)
        self._next = 0

    def next_step(self, turn: Turn) -> CallerStep:
        if self._next >= len(self._steps):
            return HangUp()
        step = self._steps[self._next]
        self._next += 1
        return step


class CallerProfile(msgspec.Struct, frozen=True):
    """How often a random caller does each of the unusual things (per turn)."""

    hang_up: float = 0.03
    hang_up_during_prompt: float = 0.02
    silent: float = 0.07
    mumble: float = 0.07
    fault: float = 0.03
    too_slow: float = 0.03  # answers only after the turn has timed out
    barge_in: float = 0.15
    think_s: tuple[float, float] = (0.4, 2.0)


class RandomCaller:
    """A caller who mostly answers what the state asks for, and sometimes does not."""

    def __init__(self, rng: random.Random, dialog: Dialog,
                 profile: CallerProfile | None = None) -> None:
        self._rng = rng
        self._dialog = dialog
        self._profile = profile or CallerProfile()

    def next_step(self, turn: Turn) -> CallerStep:
        rng, profile = self._rng, self._profile
        think = rng.uniform(*profile.think_s)
        barge_in = rng.random() < profile.barge_in
        roll = rng.random()
        for chance, step in (
            (profile.hang_up, HangUp()),
            (profile.hang_up_during_prompt, HangUp(during_prompt=True)),
            (profile.silent, Silent()),
            (profile.fault, Fault(think)),
            (profile.mumble, Say(rng.choice(MUMBLES), think, barge_in)),
        ):
            if roll < chance:
                return step
            roll -= chance
        if roll < profile.too_slow:
            think = turn.timeout_s + 1.0
            barge_in = False
        return self._answer(turn, think, barge_in)

    def _answer(self, turn: Turn, think: float, barge_in: bool) -> CallerStep:
        answers: list[CallerStep] = []
        for transition in turn.state.input_transitions:
            if isinstance(transition, OnIntent):
                examples = self._dialog.intents[transition.intent].examples
                if examples:
                    answers.append(Say(self._rng.choice(examples), think, barge_in))
            elif isinstance(transition, OnDtmf):
                digit = self._rng.choice(DIGITS) if transition.digit is None else transition.digit
                answers.append(Press(digit, think, barge_in))
        if not answers:  # a state that takes anything: say something
            return Say(self._rng.choice(MUMBLES), think, barge_in)
        # Two times in three the first answer: dialogs list their main path first.
        if len(answers) == 1 or self._rng.random() < 2 / 3:
            return answers[0]
        return self._rng.choice(answers[1:])


class SimulatedChannel:
    """A caller's steps as a recogniser and a TTS engine would report them."""

    def __init__(self, caller: Caller, rng: random.Random, clock: DialogClock) -> None:
        self._caller = caller
        self._rng = rng
        self._clock = clock
        self._pending: CallerStep | None = None  # decided during the prompt
        self._barging = False  # the pending step started during the prompt

    def _step(self, turn: Turn) -> CallerStep:
        if self._pending is None:
            self._pending = self._caller.next_step(turn)
        return self._pending

    async def play(self, text: str, voice: str, turn: Turn) -> Playback:
        seconds = prompt_seconds(text)
        if turn.state.listens and not self._barging:
            step = self._step(turn)
            if isinstance(step, HangUp) and step.during_prompt:
                await self._clock.wait(seconds * self._rng.uniform(0.1, 0.9))
                raise CallEnds("caller_hangup")
            if isinstance(step, Say | Press) and step.barge_in:
                played = seconds * self._rng.uniform(0.2, 0.7)
                await self._clock.wait(played)
                self._barging = True
                return Playback(int(played * 1000), interrupted=True)
        await self._clock.wait(seconds)
        return Playback(int(seconds * 1000))

    async def listen(self, turn: Turn) -> AsyncIterator[Heard]:
        step = self._step(turn)
        barging = self._barging
        self._pending, self._barging = None, False
        if isinstance(step, HangUp):
            await self._clock.wait(self._rng.uniform(0.1, 1.0))
            raise CallEnds("caller_hangup")
        if isinstance(step, Silent):
            await self._clock.wait(turn.timeout_s)
            yield NoInput()
            return
        think = 0.0 if barging else step.think_s
        if think >= turn.timeout_s:  # too slow: the turn is over before the caller acts
            await self._clock.wait(turn.timeout_s)
            yield NoInput()
            return
        await self._clock.wait(think)
        if isinstance(step, Fault):
            yield MediaFault("asr_unavailable", "the speech recogniser did not answer in time",
                             "asr")
        elif isinstance(step, Press):
            duration_ms = self._rng.randint(80, 160)
            await self._clock.wait(duration_ms / 1000)
            yield Pressed(step.digit, duration_ms)
        else:
            async for heard in self._speak(step.text):
                yield heard

    async def _speak(self, text: str) -> AsyncIterator[Heard]:
        """Partials word by word, then the final transcript with word timings."""
        words = text.split() or ["um"]
        segments: list[Segment] = []
        at_ms = 0
        for index, word in enumerate(words):
            length_ms = self._rng.randint(120, 260) + 35 * len(word)
            gap_ms = self._rng.randint(20, 90)
            await self._clock.wait((length_ms + gap_ms) / 1000)
            confidence = round(self._rng.uniform(0.82, 0.995), 2)
            segments.append(Segment(word, at_ms, at_ms + length_ms, confidence))
            at_ms += length_ms + gap_ms
            so_far = " ".join(words[: index + 1])
            yield Partial(so_far, round(self._rng.uniform(0.55, 0.85), 2), at_ms)
        endpoint_ms = self._rng.randint(250, 600)
        await self._clock.wait(endpoint_ms / 1000)
        overall = round(sum(s.confidence for s in segments) / len(segments), 2)
        yield Final(" ".join(words), overall, at_ms + endpoint_ms, segments)
