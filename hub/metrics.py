"""HubMetrics: what a replica exposes at ``/metrics`` (Prometheus text format).

Counting is per reader batch, never per delivery: the dispatcher hands one
batch to a thousand subscribers in a few hundred microseconds, and a counter
increment per delivery would cost more than the delivery itself. The
commit-to-delivery latency is observed once per event, from the Redis entry id
(its milliseconds are the Redis clock at commit) to the moment the dispatcher
queued the event's frame for its subscribers.

Each process has its own registry (tests build many apps in one process, and
each must count alone). Run one ``callhub serve`` worker per container and
scale with replicas, so every scrape sees one whole process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Commit-to-delivery and request latencies: sub-millisecond to tens of seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.subscribers = Gauge(
            "callhub_stream_subscribers", "Event stream clients connected to this replica",
            registry=r)
        self.deliveries = Counter(
            "callhub_stream_deliveries", "Events queued for event stream clients", registry=r)
        self.slow_disconnects = Counter(
            "callhub_stream_slow_client_disconnects",
            "Stream clients cut off because their buffer filled or a write timed out",
            registry=r)
        self.events_read = Counter(
            "callhub_shard_events_read", "Entries read from the shard logs", ["shard"],
            registry=r)
        self.reader_lag = Gauge(
            "callhub_shard_reader_lag_seconds",
            "Age of the newest entry of the last batch a shard reader handed on",
            ["shard"], registry=r)
        self.reader_reconnects = Counter(
            "callhub_shard_reader_reconnects", "Times a shard reader lost Redis and reconnected",
            ["shard"], registry=r)
        self.delivery_latency = Histogram(
            "callhub_commit_to_delivery_seconds",
            "From the commit in Redis to the event queued for its subscribers",
            ["type"], buckets=LATENCY_BUCKETS, registry=r)
        self.http_duration = Histogram(
            "callhub_http_request_duration_seconds",
            "HTTP requests to completed response headers (streams: to their first byte)",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)

    def count_subscribers(self, count: Callable[[], int]) -> None:
        """Read the subscriber count at scrape time (no bookkeeping per connect)."""
        self.subscribers.set_function(lambda: float(count()))

    def batch_dispatched(
        self, shard: int, entries: Iterable[tuple[int, str]], deliveries: int
    ) -> None:
        """One reader batch went out: ``entries`` are (entry id ms, event type)."""
        now_ms = time.time() * 1000
        newest = 0
        read = 0
        for entry_ms, event_type in entries:
            read += 1
            newest = max(newest, entry_ms)
            self.delivery_latency.labels(event_type).observe(max(0.0, now_ms - entry_ms) / 1000)
        label = str(shard)
        self.events_read.labels(label).inc(read)
        if newest:
            self.reader_lag.labels(label).set(max(0.0, now_ms - newest) / 1000)
        self.deliveries.inc(deliveries)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
