"""Transcripts: a call's conversation as turns, derived from the call's own events.

Pure: the events of one call in commit order (``callhub.events`` Structs) in,
Structs and text out; no I/O. The hub serves it (``GET
/v1/calls/{id}/transcript``) and a client can run it over events it holds.

The rules, all from the events' own fields (``callhub/events.py``):

- **Caller turns.** Every ``speech_final`` is one caller turn (``kind``
  ``speech``): its transcript, confidence and words. A recogniser commits the
  final when the caller has stopped, so the turn starts ``duration_ms`` before
  the event's ``timestamp``; a word's segment times count from that start.
  Every ``dtmf_received`` is one caller turn too (``kind`` ``dtmf``, the digit
  as its text), starting the tone's ``duration_ms`` before its timestamp.
- **Agent turns.** Every ``tts_started`` is one agent turn, starting at its
  timestamp; its duration is the ``duration_ms`` of the ``tts_completed`` of
  the same ``utterance_id`` (``None`` until that is stored).
- **Interrupted (barge-in).** An agent turn is interrupted when its
  ``tts_completed`` says ``interrupted`` (the worker cut the prompt because the
  caller spoke or pressed a key). With no ``tts_completed`` stored for it, it
  is interrupted when a caller turn follows it: the caller went on while the
  prompt had not finished.
- **Response latency.** A caller turn's ``response_latency_ms`` is the time
  from its event (``speech_final`` or ``dtmf_received``) to the first
  ``tts_started`` after it, when no other caller turn comes between: the agent
  answers the last thing the caller said or pressed, so a caller turn followed
  by another one has none, and so has the last one if the agent never spoke
  again. For speech this is the worker's ``callhub_worker_response_latency_seconds``.
- **Times** are milliseconds from the call's start (its ``call_started``, else
  its first event), never negative: an event stamped before the start (or a
  reply stamped before what it answers, a clock step) counts as 0.
- **Order.** Turns are sorted by start offset; turns starting at the same
  millisecond keep commit order.

Other event types (partials, state transitions, hooks, ...) make no turns; the
summary (``callhub.call_summary``) reads those. ``TRANSCRIPT_EVENT_TYPES``
names the types these rules read, so a reader may decode only those: the
transcript of a call's events is the transcript of its events of those types.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, Literal

import msgspec

from callhub import events as ev

Speaker = Literal["caller", "agent"]
TurnKind = Literal["speech", "dtmf"]

TRANSCRIPT_EVENT_TYPES: Final = frozenset({
    "call_started", "call_terminated", "speech_final", "dtmf_received", "tts_started",
    "tts_completed",
})


class Word(msgspec.Struct, frozen=True):
    """One word of a caller turn, timed from the call's start."""

    text: str
    offset_ms: int
    duration_ms: int
    confidence: float


class Turn(msgspec.Struct, frozen=True):
    """One turn of the conversation; ``offset_ms`` counts from the call's start.

    ``confidence`` and ``words`` are a caller speech turn's (``None`` and empty
    otherwise); ``duration_ms`` is ``None`` for an agent turn whose playback
    has not been reported finished; ``interrupted`` is an agent turn's
    barge-in; ``response_latency_ms`` is a caller turn's wait for the agent's
    answer (``None`` when the agent did not answer this turn).
    """

    speaker: Speaker
    kind: TurnKind
    text: str
    offset_ms: int
    duration_ms: int | None
    confidence: float | None
    words: list[Word]
    interrupted: bool
    response_latency_ms: int | None
    seq: int
    event_id: str


class Transcript(msgspec.Struct, frozen=True):
    """A call's conversation. ``truncated``: the call had more events than were read."""

    session_id: str
    dialog_name: str
    start_time: str | None
    ended: bool
    turns: list[Turn]
    truncated: bool = False


class _Draft:
    """A turn while the events are read (latency and barge-in are filled in later)."""

    __slots__ = ("duration_ms", "event", "interrupted", "latency_ms", "offset_ms", "order",
                 "text", "words")

    def __init__(self, event: ev.SpeechFinal | ev.DtmfReceived | ev.TtsStarted, order: int,
                 offset_ms: int, duration_ms: int | None, text: str,
                 words: list[Word]) -> None:
        self.event = event
        self.order = order
        self.offset_ms = offset_ms
        self.duration_ms = duration_ms
        self.text = text
        self.words = words
        self.interrupted = False
        self.latency_ms: int | None = None


_KINDS: dict[type, str] = {}


def event_type(event: ev.Event) -> str:
    """The event's ``type`` (its tag), for subclasses of the event classes too;
    one dict look-up per event where a chain of ``isinstance`` would be several."""
    cls = type(event)
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = str(cls.__struct_config__.tag)
    return kind


def call_start(events: Sequence[ev.Event]) -> datetime | None:
    """When the call started: its ``call_started``, else its first event (None: no events)."""
    for event in events:
        if isinstance(event, ev.CallStarted):
            return event.timestamp
    return events[0].timestamp if events else None


def millis_between(earlier: datetime, later: datetime) -> int:
    """Whole milliseconds from ``earlier`` to ``later``, never negative."""
    delta = later - earlier
    return max(0, delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000)


def iso_time(moment: datetime) -> str:
    """ISO 8601 in UTC as Get Call writes it: milliseconds only when there are any."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def build_transcript(events: Iterable[ev.Event], *, truncated: bool = False) -> Transcript:
    """The transcript of one call's events, given in commit order."""
    ordered = list(events)
    start = call_start(ordered)
    session_id = ordered[0].session_id if ordered else ""
    dialog = next((e.dialog_name for e in ordered if isinstance(e, ev.CallStarted)), "")
    turns, ended = _drafts(ordered, start) if start is not None else ([], False)
    turns.sort(key=lambda t: (t.offset_ms, t.order))
    return Transcript(
        session_id=session_id,
        dialog_name=dialog,
        start_time=iso_time(start) if start is not None else None,
        ended=ended,
        turns=[_turn(d) for d in turns],
        truncated=truncated,
    )


def _drafts(events: list[ev.Event], start: datetime) -> tuple[list[_Draft], bool]:
    """The turns in commit order, with latency and barge-in filled in; whether
    the call has ended."""
    drafts: list[_Draft] = []
    by_utterance: dict[str, _Draft] = {}
    completed: set[str] = set()
    unanswered: _Draft | None = None  # the caller turn the next agent turn answers
    playing: list[_Draft] = []  # agent turns with no tts_completed yet
    ended = False
    for order, event in enumerate(events):
        kind = event_type(event)
        if kind in _CALLER_TYPES:
            assert isinstance(event, ev.SpeechFinal | ev.DtmfReceived)
            offset = millis_between(start, event.timestamp) - event.duration_ms
            offset = max(0, offset)
            if isinstance(event, ev.SpeechFinal):
                words = [Word(s.text, offset + s.start_ms, s.end_ms - s.start_ms, s.confidence)
                         for s in event.segments]
                draft = _Draft(event, order, offset, event.duration_ms, event.transcript, words)
            else:
                draft = _Draft(event, order, offset, event.duration_ms, event.digit, [])
            drafts.append(draft)
            unanswered = draft
            for cut in playing:  # the caller went on while these had not finished
                cut.interrupted = True
            playing.clear()
        elif kind == "tts_started":
            assert isinstance(event, ev.TtsStarted)
            draft = _Draft(event, order, millis_between(start, event.timestamp), None,
                           event.text, [])
            drafts.append(draft)
            if unanswered is not None:
                unanswered.latency_ms = millis_between(unanswered.event.timestamp,
                                                       event.timestamp)
                unanswered = None
            if event.utterance_id not in completed:
                by_utterance[event.utterance_id] = draft
                playing.append(draft)
        elif kind == "tts_completed":
            assert isinstance(event, ev.TtsCompleted)
            prompt = by_utterance.pop(event.utterance_id, None)
            completed.add(event.utterance_id)
            if prompt is not None:
                prompt.duration_ms = event.duration_ms
                prompt.interrupted = event.interrupted
                if prompt in playing:
                    playing.remove(prompt)
        elif kind == "call_terminated":
            ended = True
    return drafts, ended


_CALLER_TYPES: Final = frozenset({"speech_final", "dtmf_received"})


def _turn(draft: _Draft) -> Turn:
    event = draft.event
    agent = isinstance(event, ev.TtsStarted)
    return Turn(
        speaker="agent" if agent else "caller",
        kind="dtmf" if isinstance(event, ev.DtmfReceived) else "speech",
        text=draft.text,
        offset_ms=draft.offset_ms,
        duration_ms=draft.duration_ms,
        confidence=event.confidence if isinstance(event, ev.SpeechFinal) else None,
        words=draft.words,
        interrupted=draft.interrupted,
        response_latency_ms=draft.latency_ms,
        seq=event.seq,
        event_id=event.event_id,
    )


# ---------------------------------------------------------------------------
# Renderings: a readable script and WebVTT subtitles

# Control characters (C0, DEL, C1), bidirectional overrides and the Unicode
# line separators, as escapes: a transcript line stays one line on any screen.
_ESCAPES: Final[dict[int, str]] = {
    code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]
} | {code: f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                          0x2028, 0x2029]} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
}
# In a WebVTT cue every line break (and whatever a reader might take for one)
# would end the cue's line or the cue itself: a space instead. NUL is not
# allowed in a WebVTT file (a parser would read U+FFFD).
_CUE_SPACES: Final[dict[int, str]] = {
    code: " " for code in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)
} | {0x00: "\ufffd"}


def clock(ms: int) -> str:
    """``MM:SS.mmm`` from the call's start (``H:MM:SS.mmm`` from the first hour on)."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}.{millis:03d}"
    return f"{minutes:02d}:{seconds:02d}.{millis:03d}"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.2f} s"


def transcript_text(transcript: Transcript) -> str:
    """A readable script: a heading, then one line per turn.

        # call call-abc-123, dialog helpdesk, started 2025-06-14T18:30:00Z, ended
        [00:01.900] caller: I need a password reset  (confidence 0.94, answered in 0.80 s)
        [00:04.800] agent: Let me look that up.  (interrupted)
        [00:09.100] caller pressed 5

    Text from the events is escaped (``\\n``, ``\\x1b``, ...), so no turn can
    break its line or steer a terminal.
    """
    t = transcript
    heading = f"# call {t.session_id.translate(_ESCAPES)}"
    if t.dialog_name:
        heading += f", dialog {t.dialog_name}"
    if t.start_time:
        heading += f", started {t.start_time}"
    heading += ", ended" if t.ended else ", in progress"
    if t.truncated:
        heading += " (truncated: the call has more events than were read)"
    lines = [heading]
    for turn in t.turns:
        notes = []
        if turn.confidence is not None:
            notes.append(f"confidence {turn.confidence:.2f}")
        if turn.interrupted:
            notes.append("interrupted")
        if turn.response_latency_ms is not None:
            notes.append(f"answered in {_seconds(turn.response_latency_ms)}")
        text = turn.text.translate(_ESCAPES)
        line = (f"[{clock(turn.offset_ms)}] caller pressed {text}" if turn.kind == "dtmf"
                else f"[{clock(turn.offset_ms)}] {turn.speaker}: {text}")
        lines.append(f"{line}  ({', '.join(notes)})" if notes else line)
    return "\n".join(lines) + "\n"


def _vtt_time(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _cue_text(text: str) -> str:
    """Cue text: one line, ``&`` ``<`` ``>`` as character references (so no
    ``-->`` and no tag can appear), never empty."""
    return html.escape(text.translate(_CUE_SPACES), quote=False).strip() or "\u2026"


def transcript_webvtt(transcript: Transcript) -> str:
    """WebVTT subtitles: one cue per turn, the speaker as its voice (``<v caller>``).

    A cue runs for its turn's duration; a turn without one (a prompt still
    playing) runs until the next turn starts, or a second. Cues are in start
    order and every cue ends after it starts, as WebVTT requires.
    """
    blocks = ["WEBVTT"]
    if transcript.session_id:
        blocks.append(f"NOTE call {_cue_text(transcript.session_id)}"
                      + (f", started {transcript.start_time}" if transcript.start_time else ""))
    turns = transcript.turns
    for index, turn in enumerate(turns, start=1):
        start = turn.offset_ms
        if turn.duration_ms is not None:
            end = start + turn.duration_ms
        else:
            later = next((t.offset_ms for t in turns[index:] if t.offset_ms > start), None)
            end = later if later is not None else start + 1000
        end = max(end, start + 1)
        text = f"[pressed {turn.text}]" if turn.kind == "dtmf" else turn.text
        blocks.append(f"{index}\n{_vtt_time(start)} --> {_vtt_time(end)}\n"
                      f"<v {turn.speaker}>{_cue_text(text)}</v>")
    return "\n\n".join(blocks) + "\n"
