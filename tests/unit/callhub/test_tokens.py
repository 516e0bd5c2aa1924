"""Page tokens and stream cursors: opaque, versioned, and hard to break."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.cursor import Cursor, InvalidCursor
from callhub.tokens import seal
from hub.errors import BadParameter
from hub.store.call_store import PagePosition, decode_page_token, encode_page_token
from tests.support.strategies import dialog_names, session_ids

positions = st.builds(
    PagePosition, dialog=st.just("") | dialog_names,
    start_ms=st.integers(0, 2**53), session_id=session_ids,
)
stream_ids = st.tuples(st.integers(0, 2**48), st.integers(0, 2**32))
cursors = st.integers(1, 32).flatmap(
    lambda n: st.builds(Cursor, st.tuples(*[st.none() | stream_ids] * n))
)


@given(positions)
def test_a_page_token_round_trips(position: PagePosition) -> None:
    assert decode_page_token(encode_page_token(position), position.dialog) == position


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
        decode_page_token(forged, position.dialog)
    assert error.value.param == "page_token"


@given(positions, st.integers(1, 20))
def test_a_truncated_page_token_is_refused(position: PagePosition, cut: int) -> None:
    token = encode_page_token(position)
    with pytest.raises(BadParameter):
        decode_page_token(token[:-cut], position.dialog)


@given(st.text(max_size=300))
def test_random_text_is_never_a_page_token_or_a_cursor(text: str) -> None:
    with pytest.raises(BadParameter):
        decode_page_token(text, "")
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, 1)


def test_tokens_of_one_kind_or_version_are_not_another() -> None:
    cursor = Cursor(((1, 0),))
    with pytest.raises(BadParameter):
        decode_page_token(cursor.encode(), "")
    with pytest.raises(InvalidCursor):
        Cursor.decode(encode_page_token(PagePosition("", 1, "c")), 1)
    future = seal(b"callhub-page", 2, ["", 1, "c"])
    with pytest.raises(BadParameter, match="version 2"):
        decode_page_token(future, "")


def test_a_cursor_for_another_shard_count_is_refused() -> None:
    with pytest.raises(InvalidCursor, match="2 shards"):
        Cursor.decode(Cursor((None, (5, 0))).encode(), 4)
