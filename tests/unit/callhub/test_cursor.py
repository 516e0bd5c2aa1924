"""Cursors: only positions a stream can have; a mutated cursor is refused by its digest."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.cursor import Cursor, InvalidCursor

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(data=st.data())
def test_a_mutated_cursor_is_refused_or_reads_the_same(data: st.DataObject) -> None:
    """The last character's low bits are base64 padding: changing only those
    changes no byte, so the cursor may still read the same, never another."""
    original = Cursor(((1_700_000_000_000, 3), None))
    text = original.encode()
    where = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from(_ALPHABET).filter(lambda c: c != text[where]))
    mutated = text[:where] + replacement + text[where + 1:]
    with contextlib.suppress(InvalidCursor):
        assert Cursor.decode(mutated, 2) == original


@pytest.mark.parametrize("position", [(-1, 0), (0, -1), (-(2**63), 5)])
def test_a_position_redis_would_refuse_is_an_invalid_cursor(position: tuple[int, int]) -> None:
    with pytest.raises(InvalidCursor, match="no stream can have"):
        Cursor.decode(Cursor((position,)).encode(), 1)


def test_the_largest_stream_id_is_a_position() -> None:
    largest = Cursor(((2**64 - 1, 2**64 - 1),))
    assert Cursor.decode(largest.encode(), 1) == largest
