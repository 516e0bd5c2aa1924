"""Backoff: waits stay in their range, the envelope grows by the factor up to the cap,
reset starts again."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callhub.backoff import EQUAL_JITTER, FULL_JITTER, Backoff

# Waits a backoff is used for: a microsecond to a minute (subnormal floats lose the
# precision the growth checks compare at).
bases = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=60.0))
ratios = st.floats(min_value=1.0, max_value=1e6)
factors = st.floats(min_value=1.0, max_value=10.0)
units = st.floats(min_value=0.0, max_value=1.0)
jitters = st.sampled_from([FULL_JITTER, EQUAL_JITTER, (1.0, 1.0), (1.0, 1.2)])


def draws(values: list[float]) -> Callable[[], float]:
    """A ``rand`` that returns ``values`` in turn, for ever."""
    iterator: Iterator[float] = iter(values * 1000 or [0.5] * 1000)
    return lambda: next(iterator)


@given(bases, ratios, factors, jitters, st.lists(units, min_size=1, max_size=40))
def test_every_wait_lies_between_the_jittered_base_and_the_jittered_cap(
    base: float, ratio: float, factor: float, jitter: tuple[float, float], rands: list[float]
) -> None:
    backoff = Backoff(base, base * ratio, factor=factor, jitter=jitter, rand=draws(rands))
    low, high = jitter
    for _ in rands:
        attempt = backoff.attempts + 1
        delay = backoff.next_delay()
        envelope = backoff.envelope(attempt)
        assert low * envelope <= delay <= high * envelope * (1 + 1e-12)
        assert low * base * (1 - 1e-12) <= delay <= high * backoff.cap_s * (1 + 1e-12)


@given(bases, ratios, factors, st.integers(min_value=1, max_value=200))
def test_the_envelope_starts_at_base_and_grows_by_the_factor_until_the_cap(
    base: float, ratio: float, factor: float, attempts: int
) -> None:
    backoff = Backoff(base, base * ratio, factor=factor)
    assert backoff.envelope(1) == base
    for attempt in range(1, attempts + 1):
        grown = min(backoff.cap_s, backoff.envelope(attempt) * factor)
        assert math.isclose(backoff.envelope(attempt + 1), grown, rel_tol=1e-9)


@given(bases, ratios, st.floats(min_value=1.01, max_value=10.0))
def test_the_envelope_reaches_the_cap_and_stays_there(
    base: float, ratio: float, factor: float
) -> None:
    backoff = Backoff(base, base * ratio, factor=factor)
    far = math.ceil(math.log(ratio, factor)) + 2
    if base > 0:
        assert backoff.envelope(far) == backoff.cap_s
    assert backoff.envelope(10**9) == backoff.envelope(far)  # no overflow, however long


@given(bases, ratios, factors, jitters, units, st.integers(min_value=0, max_value=20))
def test_reset_starts_the_sequence_again(
    base: float, ratio: float, factor: float, jitter: tuple[float, float], rand: float,
    failures: int
) -> None:
    used = Backoff(base, base * ratio, factor=factor, jitter=jitter, rand=lambda: rand)
    for _ in range(failures):
        used.next_delay()
    used.reset()
    assert used.attempts == 0
    fresh = Backoff(base, base * ratio, factor=factor, jitter=jitter, rand=lambda: rand)
    assert [used.next_delay() for _ in range(5)] == [fresh.next_delay() for _ in range(5)]
    assert used.delay(1) == fresh.delay(1) == base * (jitter[0] + (jitter[1] - jitter[0]) * rand)


def test_the_jitter_range_maps_the_draw_onto_the_envelope() -> None:
    assert Backoff(1.0, 8.0, jitter=EQUAL_JITTER, rand=lambda: 0.0).delay(3) == 2.0
    assert Backoff(1.0, 8.0, jitter=EQUAL_JITTER, rand=lambda: 1.0).delay(3) == 4.0
    assert Backoff(1.0, 8.0, jitter=FULL_JITTER, rand=lambda: 0.0).delay(9) == 0.0
    assert Backoff(3.0, 30.0, jitter=(1.0, 1.2), rand=lambda: 0.0).delay(1) == 3.0


@pytest.mark.parametrize(("base", "cap", "factor", "jitter"), [
    (2.0, 1.0, 2.0, EQUAL_JITTER),  # base above the cap
    (-1.0, 1.0, 2.0, EQUAL_JITTER),
    (1.0, math.inf, 2.0, EQUAL_JITTER),
    (1.0, 2.0, 0.5, EQUAL_JITTER),  # shrinking
    (1.0, 2.0, 2.0, (1.0, 0.5)),  # an empty range
])
def test_nonsense_is_refused(base: float, cap: float, factor: float,
                             jitter: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="not a backoff"):
        Backoff(base, cap, factor=factor, jitter=jitter)
