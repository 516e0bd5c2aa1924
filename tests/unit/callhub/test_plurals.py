"""Counted nouns (callhub/plurals.py): never "1 events"."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callhub.plurals import counted


def test_one_is_singular_everything_else_plural() -> None:
    assert [counted(n, "event") for n in (0, 1, 2)] == ["0 events", "1 event", "2 events"]
    assert counted(1, "retry") == "1 retry" and counted(3, "retry") == "3 retries"
    assert counted(2, "worker process", "worker processes") == "2 worker processes"
    assert counted(1234, "call") == "1,234 calls"


@given(st.integers(min_value=0, max_value=10**9))
def test_the_number_is_the_amount_and_the_noun_agrees(amount: int) -> None:
    number, word = counted(amount, "call").split(" ")
    assert int(number.replace(",", "")) == amount
    assert word == ("call" if amount == 1 else "calls")
