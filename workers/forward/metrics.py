"""ForwardMetrics: what a forwarder exposes (``callhub forward --metrics-port``).

Per subscription: attempts by outcome, dead letters by reason, disabling,
the lag (age of the oldest event not yet delivered) per shard, and the
requests in flight; one histogram of attempt latencies. Its own registry,
like the worker's, so a test or an embedding process has no global state.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ForwardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "callhub_forward_deliveries", "Delivery attempts, by subscription and outcome "
            "(delivered, retrying, dead_lettered, disabled)", ["subscription", "outcome"],
            registry=r)
        self.latency = Histogram(
            "callhub_forward_attempt_latency_seconds", "One POST to a subscriber, answer or not",
            buckets=LATENCY_BUCKETS, registry=r)
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
