from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callhub.positions import MAX_SEQ, predecessor, successor

positions = st.tuples(st.integers(0, 2**48), st.integers(0, MAX_SEQ))


def test_the_neighbours_across_a_millisecond() -> None:
    assert predecessor((5, 0)) == (4, MAX_SEQ)
    assert successor((4, MAX_SEQ)) == (5, 0)
    assert predecessor((5, 3)) == (5, 2)
    assert predecessor((0, 0)) == (0, 0)


@given(positions)
def test_nothing_lies_between_a_position_and_its_neighbours(position: tuple[int, int]) -> None:
    assert predecessor(successor(position)) == position
    assert successor(position) > position
    if position != (0, 0):
        assert successor(predecessor(position)) == position
        assert predecessor(position) < position
