"""Reading one call's own event stream (``<prefix>:{s}:call:<sid>:events``).

Two reads, both bounded:

- ``page``: the REST events endpoint's keyset pages. A page starts strictly
  after an entry id and ends at the entry it stopped at, so walking the pages
  while the call goes on never repeats or skips an event; with a type filter
  one request scans at most ``SCAN_MAX`` entries (a page may then hold fewer
  events than asked for, with ``has_more`` set).
- ``events``: the decoded events a transcript or summary is computed from, at
  most ``RECORD_EVENTS_MAX`` entries (``truncated`` beyond), of the types
  asked for only: a call's many ``speech_partial`` entries are never decoded.

The call hash says whether the call exists, whose dialog it is (the key's
scope) and which call of its session id it is (``start_ms``; a session id may
start a fresh call once an ended one expired). It is read in the same round
trip as the stream's first chunk for a key that sees every dialog, and before
it for a dialog-scoped key (a foreign call is refused before any of its entries
is read).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import msgspec

from callhub.connections import RedisClient
from callhub.cursor import format_stream_id, parse_stream_id
from callhub.events import Event
from callhub.keyspace import Keyspace
from callhub.layout import (
    CALL_DIALOG_NAME,
    CALL_START_MS,
    CALL_STATUS,
    ENTRY_DATA,
    ENTRY_TYPE,
    STATUS_TERMINATED,
)
from callhub.trusted_events import decode_trusted_event
from callhub.types import Entry, StreamId
from hub.errors import BadParameter, NotFound
from hub.store.dialog_gate import check_dialog

log = logging.getLogger("callhub.records")

RECORD_EVENTS_MAX: Final = 10_000  # entries read for one transcript or summary
SCAN_MAX: Final = 10_000  # entries one events page may scan past
READ_CHUNK: Final = 1000
_TERMINATED_TYPE: Final = b"call_terminated"

Scope = frozenset[str] | None  # the dialogs a key may see; None sees all


@dataclass(frozen=True, slots=True)
class EventsPage:
    """One page: the stored JSON of its events, and the entry it stopped at."""

    start_ms: int  # which call of the session id this is
    events: list[bytes]
    position: StreamId  # every entry up to here was scanned
    has_more: bool  # entries after ``position`` may match (found one, or stopped scanning)
    ended: bool  # the call's call_terminated is stored


@dataclass(frozen=True, slots=True)
class CallEvents:
    """A call's decoded events (of the types asked for), in commit order."""

    dialog: str
    ended: bool
    events: list[Event]
    truncated: bool


@dataclass(frozen=True, slots=True)
class _Call:
    dialog: str
    start_ms: int
    ended: bool


class CallRecords:
    """Reads calls' event streams for the API; never writes."""

    def __init__(self, redis: RedisClient, keyspace: Keyspace) -> None:
        self._redis = redis
        self._keys = keyspace

    async def page(
        self, session_id: str, scope: Scope, event_types: Collection[bytes] | None,
        after: StreamId | None, after_start_ms: int | None, page_size: int,
    ) -> EventsPage:
        """Up to ``page_size`` events after ``after`` whose type is in ``event_types``
        (None: every type). ``after_start_ms`` is the call an ``after`` came from."""
        want = page_size + 1  # one more than a page says whether there is more
        chunk = want if event_types is None else min(READ_CHUNK, max(want, 128))
        low = f"({format_stream_id(after)}" if after is not None else "-"
        call, entries = await self._call_and_entries(session_id, scope, low, chunk)
        if after_start_ms is not None and after_start_ms != call.start_ms:
            raise BadParameter("after belongs to an earlier call of this session id",
                               param="after")
        key = self._keys.call_events(session_id)
        found: list[bytes] = []
        position = after
        ended = call.ended
        scanned = 0
        while True:
            for entry_id, fields in entries:
                event_type = fields[ENTRY_TYPE]
                if event_types is None or event_type in event_types:
                    if len(found) == page_size:
                        return EventsPage(call.start_ms, found, _known(position), True, ended)
                    found.append(fields[ENTRY_DATA])
                ended = ended or event_type == _TERMINATED_TYPE
                position = parse_stream_id(entry_id)
            scanned += len(entries)
            if len(entries) < chunk:
                break  # the end of the stream
            if scanned >= SCAN_MAX:
                return EventsPage(call.start_ms, found, _known(position), True, ended)
            entries = await self._redis.xrange(  # type: ignore[assignment]
                key, f"({format_stream_id(_known(position))}", "+", count=chunk)
        if position is None:  # no entry at all: the call expired between the reads
            raise NotFound(f"call {session_id} does not exist", param="id")
        return EventsPage(call.start_ms, found, position, False, ended)

    async def events(self, session_id: str, scope: Scope,
                     event_types: Collection[str]) -> CallEvents:
        """The call's events of ``event_types``, decoded (a 404 for a call the
        scope does not see)."""
        call, entries = await self._call_and_entries(session_id, scope, "-", READ_CHUNK)
        events, truncated, ended = await self._decoded(session_id, entries, event_types)
        return CallEvents(call.dialog, call.ended or ended, events, truncated)

    async def stored_events(self, session_id: str,
                            event_types: Collection[str]) -> tuple[list[Event], bool]:
        """The events of a call already found (no scope check): events, truncated."""
        entries: list[Entry] = await self._redis.xrange(  # type: ignore[assignment]
            self._keys.call_events(session_id), "-", "+", count=READ_CHUNK)
        events, truncated, _ = await self._decoded(session_id, entries, event_types)
        return events, truncated

    async def _call_and_entries(self, session_id: str, scope: Scope, low: str,
                                count: int) -> tuple[_Call, list[Entry]]:
        """The call hash's fields and the stream's first chunk: in one round trip
        for a key that sees every dialog; for a scoped key the call's dialog first,
        and the rest only once the call is known to be in its scope, so that a foreign
        call's 404 reads (and costs) what an unknown id's does, and no foreign
        entry is ever read for it (bench/not_found_timing.py)."""
        call_key = self._keys.call(session_id)
        if scope is not None:  # the dialog alone, as Get Call reads it
            await check_dialog(self._redis, call_key, session_id, scope)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(call_key, CALL_DIALOG_NAME, CALL_START_MS, CALL_STATUS)
        pipe.xrange(self._keys.call_events(session_id), low, "+", count=count)
        fields, entries = await pipe.execute()
        return _found(session_id, fields, scope), entries

    async def _decoded(self, session_id: str, entries: list[Entry],
                       event_types: Collection[str]) -> tuple[list[Event], bool, bool]:
        """Decode ``entries`` and the chunks after them, up to the bound."""
        wanted = {t.encode() for t in event_types}
        key = self._keys.call_events(session_id)
        events: list[Event] = []
        read = 0
        ended = False
        while True:
            for _, fields in entries:
                event_type = fields[ENTRY_TYPE]
                ended = ended or event_type == _TERMINATED_TYPE
                if event_type in wanted:
                    try:
                        events.append(decode_trusted_event(fields[ENTRY_DATA]))
                    except (msgspec.ValidationError, msgspec.DecodeError) as error:
                        # Stored events were validated when committed; one that no
                        # longer decodes (a schema change) is left out, not a 500.
                        log.warning("call %s: a stored %s does not decode: %s", session_id,
                                    event_type.decode(errors="replace"), error)
            read += len(entries)
            if len(entries) < READ_CHUNK:
                return events, False, ended
            if read >= RECORD_EVENTS_MAX:
                return events, True, ended
            entries = await self._redis.xrange(  # type: ignore[assignment]
                key, f"({entries[-1][0].decode()}", "+", count=READ_CHUNK)


def _found(session_id: str, fields: list[bytes | None], scope: Scope) -> _Call:
    """The call of its hash's (dialog, start, status), or a 404: unknown, or not
    the scope's."""
    dialog, start_ms, status = fields
    if dialog is None or start_ms is None or (scope is not None
                                              and dialog.decode() not in scope):
        raise NotFound(f"call {session_id} does not exist", param="id")
    return _Call(dialog.decode(), int(start_ms), status == STATUS_TERMINATED)


def _known(position: StreamId | None) -> StreamId:
    assert position is not None  # an entry was scanned (or the page started after one)
    return position
