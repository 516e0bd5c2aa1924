"""The media side of a call, as the dialog runtime sees it.

The runtime never touches audio: it asks its ``CallerChannel`` to play a
prompt and to listen for one turn of caller input, and turns what comes back
into events. A real deployment puts speech recognition and TTS behind this
protocol; the simulator puts a scripted caller there (``caller_scripts``).

What a channel hears in one turn, in order: zero or more ``Partial``
transcripts, then exactly one of ``Final``, ``Digit``, ``NoInput`` or
``MediaFault``. A caller hanging up raises ``CallEnds("caller_hangup")`` from
``play`` or ``listen``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeAlias

import msgspec

from callhub.events import Digit, Segment
from workers.dialog.spec import StateSpec


class Partial(msgspec.Struct, frozen=True):
    """An interim transcript: the words so far."""

    transcript: str
    confidence: float
    duration_ms: int


class Final(msgspec.Struct, frozen=True):
    """The recogniser's final transcript with word timings."""

    transcript: str
    confidence: float
    duration_ms: int
    segments: list[Segment]


class Pressed(msgspec.Struct, frozen=True):
    """A DTMF key."""

    digit: Digit
    duration_ms: int


class NoInput(msgspec.Struct, frozen=True):
    """Nothing was said or pressed within the turn's timeout."""


class MediaFault(msgspec.Struct, frozen=True):
    """The media side failed this turn (recogniser down, audio lost): nothing usable heard."""

    code: str
    message: str
    component: str


Heard: TypeAlias = Partial | Final | Pressed | NoInput | MediaFault
TurnResult: TypeAlias = Final | Pressed | NoInput | MediaFault


class Playback(msgspec.Struct, frozen=True):
    """How a prompt's playback went: ``interrupted`` when the caller barged in."""

    duration_ms: int
    interrupted: bool = False


class Turn(msgspec.Struct, frozen=True):
    """One listening turn: the state the dialog is in and its no-input timeout."""

    state_name: str
    state: StateSpec
    timeout_s: float


class CallerChannel(Protocol):
    """Plays prompts to a caller and hears them back."""

    async def play(self, text: str, voice: str, turn: Turn) -> Playback:
        """Speak ``text``; ``turn`` is the state it is played in (which may listen after)."""
        ...

    def listen(self, turn: Turn) -> AsyncIterator[Heard]:
        """The caller's input for one turn, ending with a ``TurnResult``."""
        ...
