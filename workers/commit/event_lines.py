"""Events from JSON Lines: the input format of ``callhub publish``.

One spec-shaped event per line. What a hand-written or exported file may leave
out is filled in so that publishing the same file twice changes nothing:

- ``seq`` defaults to the line's position among the lines of its session
  (1, 2, 3 ...), counted over every line of that session, good or bad, so a
  bad line never shifts the numbers of the lines after it;
- ``event_id`` and ``timestamp`` are generated when missing.

Each line is judged alone: a bad line becomes a ``LineError`` with its line
number and reason, and the lines around it go on.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from callhub.events import EVENT_CLASSES, EVENT_TYPES, AnyEvent


class LineError(msgspec.Struct, frozen=True):
    line: int
    reason: str


class NumberedEvent(msgspec.Struct, frozen=True):
    line: int
    event: AnyEvent


_json_object = msgspec.json.Decoder(dict[str, Any])


def read_event_lines(lines: Iterable[bytes]) -> Iterator[NumberedEvent | LineError]:
    """Parse JSON Lines into events (or errors), numbering lines from 1."""
    positions: Counter[str] = Counter()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            fields = _json_object.decode(raw)
        except msgspec.ValidationError:
            yield LineError(number, "not a JSON object: an event is one object per line")
            continue
        except msgspec.DecodeError as error:
            yield LineError(number, f"invalid JSON: {error}")
            continue
        except RecursionError:  # msgspec's decoder recurses per nesting level
            yield LineError(number, "invalid JSON: nested too deeply")
            continue
        session_id = fields.get("session_id")
        if isinstance(session_id, str):
            positions[session_id] += 1
            fields.setdefault("seq", positions[session_id])
        yield _event(number, fields)


def _event(number: int, fields: dict[str, Any]) -> NumberedEvent | LineError:
    event_type = fields.get("type")
    if event_type not in EVENT_CLASSES:
        what = "missing field `type`" if event_type is None else f"unknown type {event_type!r}"
        return LineError(number, f"{what}; expected one of {', '.join(EVENT_TYPES)}")
    fields.setdefault("event_id", f"evt-{uuid.uuid4().hex}")
    fields.setdefault("timestamp", datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    try:
        event = msgspec.convert(fields, AnyEvent)
    except msgspec.ValidationError as error:
        return LineError(number, str(error))
    return NumberedEvent(number, event)
