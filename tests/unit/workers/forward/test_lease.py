"""fair_share: every (subscription, shard) pair has a taker, and none takes much more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workers.forward.lease import fair_share


@given(pairs=st.integers(0, 10_000), forwarders=st.integers(1, 500))
def test_the_shares_cover_every_pair_and_differ_by_at_most_one_from_even(
    pairs: int, forwarders: int,
) -> None:
    share = fair_share(pairs, forwarders)
    assert share * forwarders >= pairs
    assert (share - 1) * forwarders < pairs or share == 0


def test_some_shares() -> None:
    assert [fair_share(2, n) for n in (1, 2, 3)] == [2, 1, 1]
    assert fair_share(4, 3) == 2
    assert fair_share(5, 0) == 5  # no roster read yet: itself
