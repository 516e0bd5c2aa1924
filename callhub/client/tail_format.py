"""One readable line per call event, for ``callhub tail``.

``time  type  session  essentials``: the time is the event's own (UTC, as the
worker stamped it), the type is coloured by kind on a terminal, and the
essentials are what a person watching calls wants from each type. Everything
taken from an event is escaped so that no transcript, SIP header or hook
message can break the one-line-per-event shape or send the terminal escape
sequences (a caller's words end up here).

An event this client cannot decode (a newer hub's type or field) still gets a
line: time, type and session if it has them, then its JSON, escaped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import msgspec

from callhub import events as ev

RESET: Final = "\x1b[0m"
DIM: Final = "2"
# Colours by kind: lifecycle green, speech cyan, keys magenta, the dialog FSM
# yellow, what the dialog does blue, failures red.
COLOURS: Final[dict[str, str]] = {
    "call_started": "1;32",
    "call_terminated": "32",
    "speech_partial": "2;36",
    "speech_final": "36",
    "dtmf_received": "35",
    "state_transition": "33",
    "action_executed": "34",
    "hook_result": "34",
    "hook_error": "31",
    "tts_started": "94",
    "tts_completed": "94",
    "error": "1;31",
}
TYPE_WIDTH: Final = max(map(len, ev.EVENT_TYPES))
SESSION_WIDTH: Final = 14
RAW_MAX: Final = 300

# Control characters (C0, DEL, C1), bidirectional overrides (which reorder
# what follows them on screen) and the Unicode line separators, as escapes.
_ESCAPES: Final[dict[int, str]] = {
    code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]
} | {code: f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                          0x2028, 0x2029]} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
}


def clean(text: str) -> str:
    """``text`` with nothing that could break the line or steer the terminal."""
    return text.translate(_ESCAPES)


def paint(text: str, sgr: str, colour: bool) -> str:
    return f"\x1b[{sgr}m{text}{RESET}" if colour else text


def format_event(data: bytes, *, colour: bool = False) -> str:
    """The line for one event's JSON (never raises, whatever the bytes)."""
    try:
        event = ev.decode_event(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _format_unknown(data, colour)
    kind = str(type(event).__struct_config__.tag)
    return " ".join([
        clock(event.timestamp),
        paint(kind.ljust(TYPE_WIDTH), COLOURS[kind], colour),
        clean(event.session_id).ljust(SESSION_WIDTH),
        essentials(event, colour),
    ]).rstrip()


def clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def essentials(event: ev.AnyEvent, colour: bool) -> str:
    """What matters in each type, in words."""
    match event:
        case ev.CallStarted():
            return (f"{clean(event.caller_id) or '?'} → {clean(event.called_number) or '?'}"
                    f"  dialog {clean(event.dialog_name)}")
        case ev.CallTerminated():
            return (f"{event.reason} after {duration(event.duration_seconds)}"
                    f"  final state {clean(event.final_state) or '?'},"
                    f" {event.state_transitions} transitions")
        case ev.SpeechFinal():
            return f'"{clean(event.transcript)}" {percent(event.confidence)}{language(event)}'
        case ev.SpeechPartial():
            text = f'"{clean(event.transcript)}" {percent(event.confidence)}'
            return paint(text, DIM, colour)
        case ev.DtmfReceived():
            return f"digit {event.digit} ({event.duration_ms} ms)"
        case ev.StateTransition():
            return (f"{clean(event.from_state) or '(start)'} → {clean(event.to_state)}"
                    f"  on {clean(event.trigger_event) or '?'}")
        case ev.ActionExecuted():
            return (f"{event.action} in {clean(event.state)}{assignments(event.parameters, '')}"
                    f"{assignments(event.variables, ' set')}")
        case ev.HookResult():
            return (f"{clean(event.hook_name)} → {event.status_code} in {event.duration_ms} ms"
                    f" (state {clean(event.state)}){assignments(event.variables, ' set')}")
        case ev.HookError():
            status = f" {event.status_code}" if event.status_code is not None else ""
            return (f"{clean(event.hook_name)} {event.error_kind}{status}:"
                    f" {clean(event.message)} after {event.duration_ms} ms"
                    f" (state {clean(event.state)})")
        case ev.TtsStarted():
            return (f'{clean(event.utterance_id)} "{clean(event.text)}"'
                    f"  voice {clean(event.voice)} (state {clean(event.state)})")
        case ev.TtsCompleted():
            how = "interrupted (barge-in)" if event.interrupted else "finished"
            return f"{clean(event.utterance_id)} {how} after {event.duration_ms} ms"
        case ev.Error():
            fatal = " FATAL" if event.fatal else ""
            return (f"{clean(event.component)}: {clean(event.code)}: {clean(event.message)}"
                    f"{fatal}")
    return ""  # pragma: no cover - the match covers the union


def percent(confidence: float) -> str:
    return f"({round(confidence * 100)}%)"


def language(event: ev.SpeechFinal) -> str:
    return f" {clean(event.language)}" if event.language else ""


def duration(seconds: int) -> str:
    """135 → ``2m15s``: call lengths read faster that way than in seconds."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def assignments(values: dict[str, ev.Scalar], label: str) -> str:
    """``{"queue": "tier2", "n": null}`` → `` queue=tier2 n=null``, after ``label``."""
    if not values:
        return ""
    return label + "".join(f" {clean(name)}={scalar(value)}" for name, value in values.items())


def scalar(value: ev.Scalar) -> str:
    """Strings bare when that is unambiguous, everything else as JSON."""
    if isinstance(value, str) and value and " " not in value and value not in (
        "null", "true", "false"
    ) and not value[0].isdigit() and not value.startswith('"'):
        return clean(value)
    return clean(msgspec.json.encode(value).decode())


class _Envelope(msgspec.Struct):
    """What a line needs from an event this client does not know."""

    type: str = "?"
    session_id: str = "?"
    timestamp: str = ""


def _format_unknown(data: bytes, colour: bool) -> str:
    try:
        envelope = msgspec.json.decode(data, type=_Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError):
        envelope = _Envelope()
    try:
        when = clock(datetime.fromisoformat(envelope.timestamp))
    except ValueError:
        when = "--:--:--.---"
    raw = data.decode("utf-8", "replace")
    if len(raw) > RAW_MAX:
        raw = raw[:RAW_MAX] + "…"
    return " ".join([
        when,
        paint(clean(envelope.type).ljust(TYPE_WIDTH), DIM, colour),
        clean(envelope.session_id).ljust(SESSION_WIDTH),
        clean(raw),
    ])
