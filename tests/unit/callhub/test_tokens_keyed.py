"""Tokens under a server secret: authenticated, unreadable, rotatable."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.cursor import Cursor, InvalidCursor
from callhub.tokens import InvalidToken, Keyring, LegacyToken, seal, unseal, use_secret
from hub.errors import BadParameter
from hub.store.call_store import CallFilter, PagePosition, decode_page_token, encode_page_token

OLD = "the-old-secret-of-this-deployment-0123"
NEW = "the-new-secret-of-this-deployment-4567"
stream_ids = st.tuples(st.integers(0, 2**48), st.integers(0, 2**32))
cursors = st.integers(1, 16).flatmap(
    lambda n: st.builds(Cursor, st.tuples(*[st.none() | stream_ids] * n)))


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


@given(cursors)
def test_a_keyed_cursor_round_trips_and_does_not_show_its_positions(cursor: Cursor) -> None:
    use_secret(NEW)
    text = cursor.encode()
    assert Cursor.decode(text, len(cursor.positions)) == cursor
    for position in cursor.positions:
        if position is not None and position[0] > 2**16:
            assert str(position[0]).encode() not in _raw(text)
            assert position[0].to_bytes(8, "big") not in _raw(text)


def test_a_page_token_does_not_show_the_dialog_nor_the_session_id() -> None:
    use_secret(NEW)
    position = PagePosition(dialog="billing", start_ms=1, session_id="secret-session-42")
    token = encode_page_token(position)
    assert b"billing" not in _raw(token) and b"secret-session" not in _raw(token)
    assert decode_page_token(token, CallFilter(dialog="billing")) == position


@given(cursors, st.data())
def test_a_mutated_keyed_cursor_is_refused(cursor: Cursor, data: st.DataObject) -> None:
    use_secret(NEW)
    raw = bytearray(_raw(cursor.encode()))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor):
        Cursor.decode(forged, len(cursor.positions))


@given(st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()))
def test_any_text_is_a_cursor_only_if_sealed_here(text: str) -> None:
    use_secret(NEW)
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, 1)


def test_rotation_opens_the_previous_secrets_tokens_and_seals_with_the_new() -> None:
    cursor = Cursor(((1_700_000_000_000, 3),))
    use_secret(OLD)
    old = cursor.encode()
    use_secret(NEW, OLD)
    assert Cursor.decode(old, 1) == cursor
    new = cursor.encode()
    assert new != old
    use_secret(NEW)  # the rotation is over: the old secret's tokens are refused
    assert Cursor.decode(new, 1) == cursor
    with pytest.raises(InvalidCursor, match="not issued by this service"):
        Cursor.decode(old, 1)


def test_a_token_of_one_kind_is_not_one_of_another() -> None:
    keys = Keyring(NEW)
    token = seal(b"callhub-page", 1, [1, 2], keyring=keys)
    with pytest.raises(InvalidToken):
        unseal(b"callhub-cursor", 1, token, list, keyring=keys)


def test_an_unkeyed_token_once_a_secret_is_set_is_refused_as_legacy() -> None:
    use_secret(None)
    legacy = Cursor(((5, 0),)).encode()
    page = encode_page_token(PagePosition(dialog="", start_ms=1, session_id="s-1"))
    use_secret(NEW)
    with pytest.raises(InvalidCursor, match="before this deployment had a secret"):
        Cursor.decode(legacy, 1)
    with pytest.raises(LegacyToken):
        unseal(b"callhub-cursor", 1, legacy, Cursor)
    with pytest.raises(BadParameter, match="page_token is not valid"):
        decode_page_token(page, CallFilter())
