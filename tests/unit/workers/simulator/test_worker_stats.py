"""The simulated worker's status words (WorkerStats.describe_errors): a count
that says what is going wrong, in the singular when there is one."""

from __future__ import annotations

from workers.simulator.worker import WorkerStats


def test_no_errors_is_just_the_count() -> None:
    assert WorkerStats().describe_errors() == "0 errors"


def test_one_kind_of_error_is_named() -> None:
    stats = WorkerStats(errors=1, error_reasons={"redis unreachable": 1})
    assert stats.describe_errors() == "1 error (redis unreachable)"


def test_several_kinds_name_the_most_common() -> None:
    reasons = {"call_terminated refused": 1, "redis unreachable": 3, "KeyError (see the log)": 1}
    stats = WorkerStats(errors=5, error_reasons=reasons)
    assert stats.describe_errors() == "5 errors (most: redis unreachable, 3)"
