"""ForwardMetrics: what a forwarder exposes (``callhub forward --metrics-port``).

Per subscription: attempts by outcome, dead letters by reason, disabling,
the lag (age of the oldest event not yet delivered) per shard, and the
requests in flight; one histogram of attempt latencies. Its own registry,
like the worker's, so a test or an embedding process has no global state.

The latency histogram is ``AttemptLatency``, plain counts collected when
scraped: prometheus-client's ``Histogram.observe`` takes a lock twice per
observation, a tenth of the forwarder's CPU at thousands of attempts a second.
Only the event loop's thread observes; a scrape reads the counts as they are.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AttemptLatency(Collector):
    """A histogram of one label-less series: per-bucket counts and the sum."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = list(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip([*self._bounds, float("inf")], counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=cumulative,
                                    sum_value=total)


class ForwardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "callhub_forward_deliveries", "Delivery attempts, by subscription and outcome "
            "(delivered, retrying, dead_lettered, disabled)", ["subscription", "outcome"],
            registry=r)
        self.latency = AttemptLatency(
            "callhub_forward_attempt_latency_seconds", "One POST to a subscriber, answer or not",
            LATENCY_BUCKETS)
        r.register(self.latency)
        self.lag = Gauge(
            "callhub_forward_lag_seconds", "Age of the oldest event not yet delivered or "
            "dead-lettered, per subscription and shard this forwarder holds",
            ["subscription", "shard"], registry=r)
        self.in_flight = Gauge(
            "callhub_forward_in_flight", "POSTs awaiting an answer, by subscription",
            ["subscription"], registry=r)
        self.dead_letters = Counter(
            "callhub_forward_dead_letters", "Events given up on, by subscription and reason "
            "(retry_window, retention_gap)", ["subscription", "reason"], registry=r)
        self.disabled = Counter(
            "callhub_forward_disabled_subscriptions", "Subscriptions this forwarder disabled, "
            "by reason (gone, failing)", ["reason"], registry=r)
        self.held = Gauge(
            "callhub_forward_leases_held", "(subscription, shard) pairs this forwarder delivers",
            registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on a background thread (prometheus-client's server)."""
        start_http_server(port, addr=host, registry=self.registry)
