"""Page tokens and stream cursors: opaque, versioned, and hard to break."""

from __future__ import annotations

import base64

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.cursor import Cursor, InvalidCursor
from callhub.tokens import seal
from hub.errors import BadParameter
from hub.store.call_store import CallFilter, PagePosition, decode_page_token, encode_page_token
from tests.support.strategies import dialog_names, session_ids

times = st.none() | st.integers(-(2**53), 2**53)
positions = st.builds(
    PagePosition, dialog=st.just("") | dialog_names,
    start_ms=st.integers(0, 2**53), session_id=session_ids,
    status=st.sampled_from(["active", "terminated", "all"]),
    caller_id=st.just("") | st.text(min_size=1, max_size=64),
    ended_after_ms=times, ended_before_ms=times, ended=st.booleans(),
)
ACTIVE = CallFilter()


def listing_of(position: PagePosition) -> CallFilter:
    """The filters of the listing a position belongs to."""
    return CallFilter(status=position.status, dialog=position.dialog,  # type: ignore[arg-type]
                      caller_id=position.caller_id, ended_after_ms=position.ended_after_ms,
                      ended_before_ms=position.ended_before_ms)
stream_ids = st.tuples(st.integers(0, 2**48), st.integers(0, 2**32))
cursors = st.integers(1, 32).flatmap(
    lambda n: st.builds(Cursor, st.tuples(*[st.none() | stream_ids] * n))
)


@given(positions)
def test_a_page_token_round_trips(position: PagePosition) -> None:
    assert decode_page_token(encode_page_token(position), listing_of(position)) == position


@given(positions, st.sampled_from(["status", "dialog_name", "caller_id", "ended_after",
                                   "ended_before"]))
def test_a_page_token_is_bound_to_every_filter_of_its_listing(
    position: PagePosition, changed: str
) -> None:
    listing = listing_of(position)
    other = {
        "status": {"status": "all" if position.status == "terminated" else "terminated"},
        "dialog_name": {"dialog": position.dialog + "x"},
        "caller_id": {"caller_id": position.caller_id + "1"},
        "ended_after": {"ended_after_ms": (position.ended_after_ms or 0) + 1},
        "ended_before": {"ended_before_ms": (position.ended_before_ms or 0) + 1},
    }[changed]
    with pytest.raises(BadParameter, match=f"different {changed}$") as error:
        decode_page_token(encode_page_token(position),
                          msgspec.structs.replace(listing, **other))  # type: ignore[arg-type]
    assert error.value.param == "page_token"


def test_a_token_of_an_active_listing_from_before_the_ended_calls_still_reads() -> None:
    old = seal(b"callhub-page", 1, ["helpdesk", 5, "c-1"])
    assert decode_page_token(old, CallFilter(dialog="helpdesk")) == PagePosition(
        "helpdesk", 5, "c-1")


@given(cursors)
def test_a_cursor_round_trips(cursor: Cursor) -> None:
    text = cursor.encode()
    assert text.isascii() and "\n" not in text and "\r" not in text
    assert Cursor.decode(text, len(cursor.positions)) == cursor


@given(positions, st.data())
def test_any_changed_byte_of_a_page_token_is_refused(
    position: PagePosition, data: st.DataObject
) -> None:
    raw = bytearray(base64.urlsafe_b64decode(encode_page_token(position) + "=="))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(BadParameter) as error:
        decode_page_token(forged, listing_of(position))
    assert error.value.param == "page_token"


@given(positions, st.integers(1, 20))
def test_a_truncated_page_token_is_refused(position: PagePosition, cut: int) -> None:
    token = encode_page_token(position)
    with pytest.raises(BadParameter):
        decode_page_token(token[:-cut], listing_of(position))


@given(st.text(max_size=300))
def test_random_text_is_never_a_page_token_or_a_cursor(text: str) -> None:
    with pytest.raises(BadParameter):
        decode_page_token(text, ACTIVE)
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, 1)


def test_tokens_of_one_kind_or_version_are_not_another() -> None:
    cursor = Cursor(((1, 0),))
    with pytest.raises(BadParameter):
        decode_page_token(cursor.encode(), ACTIVE)
    with pytest.raises(InvalidCursor):
        Cursor.decode(encode_page_token(PagePosition("", 1, "c")), 1)
    future = seal(b"callhub-page", 2, ["", 1, "c"])
    with pytest.raises(BadParameter, match="version 2"):
        decode_page_token(future, ACTIVE)


def test_a_cursor_for_another_shard_count_is_refused() -> None:
    with pytest.raises(InvalidCursor, match="2 shards"):
        Cursor.decode(Cursor((None, (5, 0))).encode(), 4)
