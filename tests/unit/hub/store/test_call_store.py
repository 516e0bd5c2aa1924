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


# An implausibly dated call (a backfill, a wrong clock): its duration counts from
# its first commit, as the reaper counts its age (callhub/commit_time.py).
STAMPED_MS = 1_749_925_800_000  # 2025-06-14T18:30:00Z, the call_started's timestamp
COMMITTED_MS = 1_764_700_000_000  # when Redis committed it, long after


def test_an_implausibly_dated_active_call_lasts_since_its_commit() -> None:
    fields = call_hash(last_id=b"%d-0" % (COMMITTED_MS + 2_000))
    view = store()._view("c-1", fields, now=(COMMITTED_MS + 45_000) / 1000,
                         first_commit_ms=COMMITTED_MS)
    assert view is not None
    assert view.duration_seconds == 45  # not the 170 days since its timestamp
    assert view.start_time == "2025-06-14T18:30:00Z"  # the event's own data, as stamped


def test_a_reaped_call_of_a_backfill_lasts_from_its_commit_to_its_end() -> None:
    end_ms = COMMITTED_MS + 60_000  # the reaper stamps its end with the hub's clock
    fields = call_hash(status=b"terminated", end_ms=b"%d" % end_ms, last_id=b"%d-0" % end_ms,
                       reason=b"timeout", final_state=b"greeting")
    view = store()._view("c-1", fields, now=end_ms / 1000 + 5, first_commit_ms=COMMITTED_MS)
    assert view is not None and view.duration_seconds == 60


def test_an_ended_backfill_keeps_the_duration_its_own_timestamps_give() -> None:
    fields = call_hash(status=b"terminated", end_ms=b"%d" % (STAMPED_MS + 20_000),
                       last_id=b"%d-0" % (COMMITTED_MS + 5), reason=b"normal",
                       final_state=b"goodbye")
    view = store()._view("c-1", fields, now=COMMITTED_MS / 1000,
                         first_commit_ms=COMMITTED_MS)
    assert view is not None and view.duration_seconds == 20


@given(skew_s=st.integers(min_value=-300, max_value=300),
       elapsed_s=st.integers(min_value=0, max_value=4 * 3600))
def test_a_plausibly_dated_call_lasts_since_its_timestamp(skew_s: int, elapsed_s: int) -> None:
    started_ms = COMMITTED_MS + skew_s * 1000
    fields = call_hash(start_ms=b"%d" % started_ms, last_id=b"%d-0" % COMMITTED_MS)
    now_ms = started_ms + elapsed_s * 1000
    view = store()._view("c-1", fields, now=now_ms / 1000, first_commit_ms=COMMITTED_MS)
    assert view is not None and view.duration_seconds == elapsed_s


async def test_only_a_call_dated_far_from_its_last_commit_costs_a_read_of_its_first() -> None:
    calls = store()
    recent = call_hash(start_ms=b"%d" % COMMITTED_MS, last_id=b"%d-0" % (COMMITTED_MS + 1))
    old = call_hash(last_id=b"%d-0" % COMMITTED_MS)
    await calls._redis.xadd(calls._keys.call_events("c-old"), {"data": "{}"},
                            id=f"{COMMITTED_MS}-0")
    assert await calls._first_commit_ms(["c-1", "c-old", "c-gone"], [recent, old, old]) == [
        None, COMMITTED_MS, None]
