"""Hypothesis strategies and plain builders for valid call events.

One place that knows how to make a valid event of every type, used by the
schema properties, the commit-script state machine and the CLI tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from callhub import events as ev

T0 = datetime(2025, 6, 14, 18, 30, tzinfo=UTC)

session_ids = st.from_regex(ev.SESSION_ID_PATTERN, fullmatch=True)
dialog_names = st.from_regex(ev.DIALOG_NAME_PATTERN, fullmatch=True)
names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
counts = st.integers(min_value=0, max_value=2**53 - 1)
small_counts = st.integers(min_value=0, max_value=100_000)
confidences = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
seqs = st.integers(min_value=1, max_value=2**53 - 1)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), texts,
    st.floats(allow_nan=False, allow_infinity=False),
)
variables = st.dictionaries(st.text(min_size=1, max_size=12), scalars, max_size=4)
event_ids = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    min_size=1, max_size=30,
)


@st.composite
def segments(draw: st.DrawFn) -> ev.Segment:
    start = draw(small_counts)
    return ev.Segment(
        text=draw(texts), start_ms=start, end_ms=start + draw(small_counts),
        confidence=draw(confidences),
    )


PAYLOADS: dict[type[ev.Event], dict[str, st.SearchStrategy[Any]]] = {
    ev.CallStarted: dict(
        caller_id=st.from_regex(r"\+?[0-9]{0,15}", fullmatch=True),
        called_number=st.from_regex(r"\+?[0-9]{0,15}", fullmatch=True),
        dialog_name=dialog_names, sip_headers=st.dictionaries(names, texts, max_size=3),
    ),
    ev.CallTerminated: dict(
        reason=st.sampled_from(["normal", "caller_hangup", "system_hangup", "transfer",
                                "error", "timeout"]),
        duration_seconds=counts, state_transitions=counts, final_state=names,
    ),
    ev.SpeechPartial: dict(transcript=texts, confidence=confidences, language=names,
                           duration_ms=counts),
    ev.SpeechFinal: dict(transcript=texts, confidence=confidences, language=names,
                         duration_ms=counts, segments=st.lists(segments(), max_size=4)),
    ev.DtmfReceived: dict(digit=st.sampled_from(list("0123456789*#")), duration_ms=counts),
    ev.StateTransition: dict(from_state=names, to_state=names, trigger_event=names,
                             dialog_name=names),
    ev.ActionExecuted: dict(
        action=st.sampled_from(["play", "set_variable", "hook", "hold", "resume", "transfer",
                                "hangup"]),
        state=names, parameters=st.dictionaries(names, scalars, max_size=3),
        variables=variables,
    ),
    ev.HookResult: dict(hook_name=names, state=names, status_code=st.integers(100, 599),
                        duration_ms=counts, variables=variables),
    ev.HookError: dict(
        hook_name=names, state=names,
        error_kind=st.sampled_from(["timeout", "connection", "http_status", "invalid_response"]),
        message=texts, duration_ms=counts, status_code=st.none() | st.integers(100, 599),
    ),
    ev.TtsStarted: dict(utterance_id=event_ids, text=texts, voice=names, state=names),
    ev.TtsCompleted: dict(utterance_id=event_ids, duration_ms=counts, interrupted=st.booleans()),
    ev.Error: dict(code=names, message=texts, component=names, fatal=st.booleans()),
}
assert set(PAYLOADS) == set(ev.EVENT_CLASSES.values())


def events_of(
    cls: type[ev.Event], *, session_id: st.SearchStrategy[str] = session_ids,
    seq: st.SearchStrategy[int] = seqs,
) -> st.SearchStrategy[ev.Event]:
    return st.builds(
        cls, event_id=event_ids, session_id=session_id, timestamp=timestamps, seq=seq,
        **PAYLOADS[cls],
    )


any_event = st.one_of([events_of(cls) for cls in PAYLOADS])


# ---------------------------------------------------------------------------
# Plain builders for example-based tests


def call_started(sid: str, seq: int = 1, dialog: str = "helpdesk", at: int = 0,
                 caller: str = "+15551234567") -> ev.CallStarted:
    return ev.CallStarted(
        event_id=f"{sid}-{seq}", session_id=sid, timestamp=T0 + timedelta(seconds=at), seq=seq,
        caller_id=caller, called_number="+18001234567", dialog_name=dialog,
    )


def dtmf(sid: str, seq: int, digit: ev.Digit = "5") -> ev.DtmfReceived:
    return ev.DtmfReceived(
        event_id=f"{sid}-{seq}", session_id=sid, timestamp=T0, seq=seq, digit=digit,
        duration_ms=120,
    )


def transition(sid: str, seq: int, to_state: str, from_state: str = "") -> ev.StateTransition:
    return ev.StateTransition(
        event_id=f"{sid}-{seq}", session_id=sid, timestamp=T0, seq=seq, from_state=from_state,
        to_state=to_state, trigger_event="speech_final", dialog_name="helpdesk",
    )


def action(
    sid: str, seq: int, name: ev.Action, variables: dict[str, ev.Scalar] | None = None
) -> ev.ActionExecuted:
    return ev.ActionExecuted(
        event_id=f"{sid}-{seq}", session_id=sid, timestamp=T0, seq=seq, action=name,
        state="menu", variables=variables or {},
    )


def terminated(sid: str, seq: int, reason: str = "normal", at: int = 60) -> ev.CallTerminated:
    return ev.CallTerminated(
        event_id=f"{sid}-{seq}", session_id=sid, timestamp=T0 + timedelta(seconds=at), seq=seq,
        reason=reason,  # type: ignore[arg-type]
        duration_seconds=at, state_transitions=0, final_state="goodbye",
    )
