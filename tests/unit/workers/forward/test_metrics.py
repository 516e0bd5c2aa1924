"""AttemptLatency exposes what prometheus-client's own Histogram would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from workers.forward.metrics import LATENCY_BUCKETS, AttemptLatency

NAME = "callhub_forward_attempt_latency_seconds"


@given(st.lists(st.sampled_from([0.0, *LATENCY_BUCKETS, 31.0]) |
                st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_the_exposition_is_prometheus_clients_histograms(latencies: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    latency = AttemptLatency(NAME, "doc", LATENCY_BUCKETS)
    ours.register(latency)
    reference = Histogram(NAME, "doc", buckets=LATENCY_BUCKETS, registry=theirs)
    for seconds in latencies:
        latency.observe(seconds)
        reference.observe(seconds)

    def series(registry: CollectorRegistry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in lines if line.startswith(NAME) and
                 "_created" not in line)}

    got, want = series(ours), series(theirs)
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert abs(got[name] - value) <= 1e-9 * max(1.0, abs(value)), name
