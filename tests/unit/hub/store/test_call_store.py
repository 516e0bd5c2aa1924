"""The call object built from a call hash: times as the spec writes them, only
the fields the spec shows, variables decoded, the cursor at the hash's last id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import fakeredis
from hypothesis import given
from hypothesis import strategies as st

from callhub.cursor import Cursor
from callhub.keyspace import Keyspace
from hub.store.call_store import CallStore, iso_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=-62_135_596_800_000 + 86_400_000, max_value=253_402_300_799_999))
def test_iso_ms_is_datetimes_iso_format_in_utc(ms: int) -> None:
    moment = EPOCH + timedelta(milliseconds=ms)
    expected = moment.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    assert iso_ms(ms) == expected.replace("+00:00", "Z")


def test_iso_ms_examples() -> None:
    assert iso_ms(1749925800000) == "2025-06-14T18:30:00Z"
    assert iso_ms(1749925800007) == "2025-06-14T18:30:00.007Z"
    assert iso_ms(0) == "1970-01-01T00:00:00Z"


def store(shards: int = 1) -> CallStore:
    return CallStore(fakeredis.aioredis.FakeRedis(), Keyspace(shards=shards))


def call_hash(**extra: bytes) -> dict[bytes, bytes]:
    return {
        b"session_id": b"c-1", b"caller_id": b"+15551234567", b"called_number": b"+18001234567",
        b"dialog_name": b"helpdesk", b"current_state": b"collect_info",
        b"start_ms": b"1749925800000", b"status": b"active", b"state_transitions": b"2",
        b"seq": b"7", b"last_id": b"1749925845000-3", b"lease_owner": b"worker-1",
        **{k.encode(): v for k, v in extra.items()},
    }


def test_an_active_call() -> None:
    fields = call_hash(**{"var:customer_name": b'"Jane"', "var:attempts": b"2",
                          "var:vip": b"true", "var:note": b"null"})
    view = store()._view("c-1", fields, now=1749925845.9)
    assert view is not None
    assert (view.session_id, view.caller_id, view.called_number, view.dialog_name,
            view.current_state, view.status) == (
        "c-1", "+15551234567", "+18001234567", "helpdesk", "collect_info", "active")
    assert view.start_time == "2025-06-14T18:30:00Z"
    assert view.duration_seconds == 45
    assert view.variables == {"customer_name": "Jane", "attempts": 2, "vip": True, "note": None}
    assert Cursor.decode(view.cursor, 1).positions == ((1749925845000, 3),)
    assert (view.end_time, view.reason, view.final_state) == (None, None, None)


def test_an_ended_call() -> None:
    fields = call_hash(status=b"terminated", end_ms=b"1749925935500",
                       reason=b"caller_hangup", final_state=b"goodbye")
    view = store()._view("c-1", fields, now=1749999999.0)
    assert view is not None
    assert view.duration_seconds == 135
    assert view.end_time == "2025-06-14T18:32:15.500Z"
    assert (view.reason, view.final_state) == ("caller_hangup", "goodbye")


def test_the_cursor_names_the_calls_own_shard() -> None:
    keys = Keyspace(shards=4)
    view = store(4)._view("c-1", call_hash(), now=1749925845.0)
    assert view is not None
    positions = Cursor.decode(view.cursor, 4).positions
    assert positions[keys.shard_of("c-1")] == (1749925845000, 3)
    assert sum(p is not None for p in positions) == 1


def test_a_hash_without_a_start_is_no_call() -> None:
    assert store()._view("c-1", {}, now=0.0) is None
    assert store()._view("c-1", {b"seq": b"3"}, now=0.0) is None
