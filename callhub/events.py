"""The call event schema: the one definition shared by workers, hub and tests.

Every event is a msgspec Struct in a tagged union on ``type``. Workers build
Structs and encode them once; the JSON bytes they commit are what every
subscriber receives, so the wire format is fixed here and nowhere else.

Field names and types follow ``spec/call-event-stream-api.md``. Additive to the
spec: every event carries ``seq``, its position in the call (1, 2, 3 ...), which
makes commits idempotent and ordered (DESIGN I2). The six payloads the spec
leaves open (``action_executed``, ``hook_result``, ``hook_error``,
``tts_started``, ``tts_completed``, ``error``) are defined here and documented
in docs/events.md.

Decoders ignore fields they do not know, so a reader keeps working when a newer
worker adds a field.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Final, Literal, TypeAlias

import msgspec

# ---------------------------------------------------------------------------
# Constrained scalar types

SESSION_ID_MAX = 128
NAME_MAX = 64
TEXT_MAX = 8192
EVENT_MAX_BYTES = 64 * 1024

# Session ids become parts of Redis keys (``callhub:{s}:call:<sid>``), URL path
# segments and SSE frames. Braces would confuse Redis hash tags, ``:`` would let
# one call's key collide with another's (``x:events``), CR/LF would break SSE
# framing and ``/`` the REST path, so the alphabet is deliberately small.
SESSION_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=~-]{0,127}")
# Dialog names become key suffixes (``callhub:{s}:active:<dialog>``).
DIALOG_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

NonNegativeInt = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1, description="Per-call sequence number")]
# No CR or LF anywhere (they would break SSE framing and log lines). Written
# as a lookahead so it means the same in Python and in JSON Schema (ECMA) regex.
ONE_LINE = r"^(?![\s\S]*[\r\n])"
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ONE_LINE)]
Name = Annotated[str, msgspec.Meta(max_length=NAME_MAX, pattern=ONE_LINE)]
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
PhoneNumber = Annotated[str, msgspec.Meta(max_length=64, pattern=ONE_LINE)]
Scalar: TypeAlias = str | int | float | bool | None
Variables = dict[Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)], Scalar]

Digit = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
TerminationReason = Literal[
    "normal", "caller_hangup", "system_hangup", "transfer", "error", "timeout"
]
Action = Literal["play", "set_variable", "hook", "hold", "resume", "transfer", "hangup"]
HookErrorKind = Literal["timeout", "connection", "http_status", "invalid_response"]

EVENT_TYPES: Final = (
    "call_started",
    "call_terminated",
    "speech_partial",
    "speech_final",
    "dtmf_received",
    "state_transition",
    "action_executed",
    "hook_result",
    "hook_error",
    "tts_started",
    "tts_completed",
    "error",
)


class InvalidSessionId(ValueError):
    """A session id that cannot name a call (bad length or characters)."""


class InvalidDialogName(ValueError):
    """A dialog name that cannot name an index key."""


def check_session_id(session_id: str) -> str:
    """Return ``session_id`` if it can name a call, else raise with the reason.

    Shared by the schema and the REST path parameter so both say the same thing.
    """
    if SESSION_ID_PATTERN.fullmatch(session_id):
        return session_id
    if not session_id:
        raise InvalidSessionId("session_id must not be empty")
    if len(session_id) > SESSION_ID_MAX:
        raise InvalidSessionId(f"session_id is longer than {SESSION_ID_MAX} characters")
    bad = next(
        (c for c in session_id if not SESSION_ID_PATTERN.fullmatch("a" + c)),
        session_id[0],
    )
    raise InvalidSessionId(
        f"session_id {session_id!r} contains {bad!r}; a session id is 1-{SESSION_ID_MAX} "
        "characters of A-Z a-z 0-9 . _ @ + = ~ - starting with a letter or digit"
    )


def check_dialog_name(dialog_name: str) -> str:
    """Return ``dialog_name`` if it can name a dialog index, else raise."""
    if DIALOG_NAME_PATTERN.fullmatch(dialog_name):
        return dialog_name
    raise InvalidDialogName(
        f"dialog_name {dialog_name!r} is not valid; a dialog name is 1-{NAME_MAX} "
        "characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
    )


# ---------------------------------------------------------------------------
# The envelope


class Event(msgspec.Struct, tag_field="type", frozen=True):
    """Fields every event carries (the spec's envelope, plus ``seq``)."""

    event_id: EventId
    session_id: str
    timestamp: datetime
    seq: Seq

    def __post_init__(self) -> None:
        check_session_id(self.session_id)
        if self.timestamp.utcoffset() != timedelta(0):
            raise ValueError(
                "timestamp must be an ISO 8601 UTC time, e.g. 2025-06-14T18:30:00Z"
            )


# ---------------------------------------------------------------------------
# The spec's payloads


class CallStarted(Event, frozen=True, tag="call_started"):
    """A new call has connected."""

    caller_id: PhoneNumber
    called_number: PhoneNumber
    dialog_name: str
    sip_headers: dict[str, Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_dialog_name(self.dialog_name)


class CallTerminated(Event, frozen=True, tag="call_terminated"):
    """A call has ended."""

    reason: TerminationReason
    duration_seconds: NonNegativeInt
    state_transitions: NonNegativeInt
    final_state: Name


class Segment(msgspec.Struct, frozen=True):
    """One word of a final transcript with its timing."""

    text: Text
    start_ms: NonNegativeInt
    end_ms: NonNegativeInt
    confidence: Confidence

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ValueError("segment end_ms must not be before start_ms")


class SpeechPartial(Event, frozen=True, tag="speech_partial"):
    """An interim transcript; it grows until the speech_final replaces it."""

    transcript: Text
    confidence: Confidence
    language: Name
    duration_ms: NonNegativeInt


class SpeechFinal(Event, frozen=True, tag="speech_final"):
    """A final transcript with word-level timing."""

    transcript: Text
    confidence: Confidence
    language: Name
    duration_ms: NonNegativeInt
    segments: list[Segment] = []


class DtmfReceived(Event, frozen=True, tag="dtmf_received"):
    """A DTMF digit was received."""

    digit: Digit
    duration_ms: NonNegativeInt


class StateTransition(Event, frozen=True, tag="state_transition"):
    """The dialog FSM changed states."""

    from_state: Name
    to_state: Name
    trigger_event: Name
    dialog_name: Name


# ---------------------------------------------------------------------------
# The payloads the spec leaves open (documented in docs/events.md)


class ActionExecuted(Event, frozen=True, tag="action_executed"):
    """A dialog action ran in ``state``.

    ``hold``, ``resume`` and ``transfer`` move the call's status; ``variables``
    is a patch applied to the call's variables in the same commit (a ``null``
    value removes a variable).
    """

    action: Action
    state: Name
    parameters: dict[str, Scalar] = {}
    variables: Variables = {}


class HookResult(Event, frozen=True, tag="hook_result"):
    """A dialog hook (an HTTP call) answered; its variables patch the call's."""

    hook_name: Name
    state: Name
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    duration_ms: NonNegativeInt
    variables: Variables = {}


class HookError(Event, frozen=True, tag="hook_error"):
    """A dialog hook failed: timed out, unreachable, bad status or bad body."""

    hook_name: Name
    state: Name
    error_kind: HookErrorKind
    message: Text
    duration_ms: NonNegativeInt
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None


class TtsStarted(Event, frozen=True, tag="tts_started"):
    """Text-to-speech playback began."""

    utterance_id: EventId
    text: Text
    voice: Name
    state: Name


class TtsCompleted(Event, frozen=True, tag="tts_completed"):
    """Text-to-speech playback finished (``interrupted`` when the caller barged in)."""

    utterance_id: EventId
    duration_ms: NonNegativeInt
    interrupted: bool = False


class Error(Event, frozen=True, tag="error"):
    """A system error occurred while handling the call."""

    code: Name
    message: Text
    component: Name
    fatal: bool = False


AnyEvent: TypeAlias = (
    CallStarted
    | CallTerminated
    | SpeechPartial
    | SpeechFinal
    | DtmfReceived
    | StateTransition
    | ActionExecuted
    | HookResult
    | HookError
    | TtsStarted
    | TtsCompleted
    | Error
)

EVENT_CLASSES: Final[dict[str, type[Event]]] = {
    str(cls.__struct_config__.tag): cls for cls in AnyEvent.__args__
}
assert tuple(EVENT_CLASSES) == EVENT_TYPES

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    """The event's JSON bytes: what is committed and what subscribers receive."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode and validate one event; raises ``msgspec.ValidationError``/``DecodeError``."""
    return _decoder.decode(data)


def variables_patch(event: Event) -> dict[str, Scalar]:
    """The call-variable patch an event carries (empty for most types)."""
    if isinstance(event, ActionExecuted | HookResult):
        return event.variables
    return {}
