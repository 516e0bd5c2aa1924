"""HubMetrics: what a replica exposes at ``/metrics`` (Prometheus text format).

Nothing is counted per delivery: the dispatcher hands one batch to a thousand
subscribers in a few hundred microseconds, and a counter increment per
delivery would cost more than the delivery. Subscribers, deliveries, slow-client
cut-offs and each shard reader's progress are plain integers the dispatcher and
readers keep anyway, read by a collector at scrape time. The commit-to-delivery
latency is observed once per event, from the Redis entry id (its milliseconds
are the Redis clock at commit) to the moment the dispatcher queued the event.

Each process has its own registry (tests build many apps in one process, and
each must count alone). Run one ``callhub serve`` worker per container and
scale with replicas, so every scrape sees one whole process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.types import Scope

from callhub.layout import ENTRY_TYPE
from callhub.types import Entry

# Commit-to-delivery and request latencies: sub-millisecond to tens of seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class DispatcherCounts(Protocol):
    """What the collector reads of the stream engine's dispatcher (at scrape time)."""

    @property
    def count(self) -> int: ...
    @property
    def deliveries(self) -> int: ...
    @property
    def slow_disconnects(self) -> int: ...


class ReaderCounts(Protocol):
    """What the collector reads of each shard reader."""

    @property
    def shard(self) -> int: ...
    @property
    def events_read(self) -> int: ...
    @property
    def lag_s(self) -> float: ...
    @property
    def reconnects(self) -> int: ...


class ReplicaCollector(Collector):
    """Reads the dispatcher's and readers' own counters at scrape time.

    It knows them by the counters it reads (``DispatcherCounts``,
    ``ReaderCounts``), not by class: the metrics sit beneath the rooms they
    count, and each room imports them, never the other way round.
    """

    def __init__(self, dispatcher: DispatcherCounts, readers: Sequence[ReaderCounts]) -> None:
        self._dispatcher = dispatcher
        self._readers = readers

    def collect(self) -> Iterator[Metric]:
        dispatcher = self._dispatcher
        yield GaugeMetricFamily("callhub_stream_subscribers",
                                "Event stream clients connected to this replica",
                                value=dispatcher.count)
        yield CounterMetricFamily("callhub_stream_deliveries",
                                  "Events queued or written to event stream clients",
                                  value=dispatcher.deliveries)
        yield CounterMetricFamily(
            "callhub_stream_slow_client_disconnects",
            "Stream clients cut off because their buffer filled or a write stalled",
            value=dispatcher.slow_disconnects)
        read = CounterMetricFamily("callhub_shard_events_read",
                                   "Entries read from the shard logs", labels=["shard"])
        lag = GaugeMetricFamily(
            "callhub_shard_reader_lag_seconds",
            "Age, when it was handed on, of the newest entry of a shard reader's last batch",
            labels=["shard"])
        reconnects = CounterMetricFamily("callhub_shard_reader_reconnects",
                                         "Times a shard reader lost Redis and went on",
                                         labels=["shard"])
        for reader in self._readers:
            label = [str(reader.shard)]
            read.add_metric(label, reader.events_read)
            lag.add_metric(label, reader.lag_s)
            reconnects.add_metric(label, reader.reconnects)
        yield read
        yield lag
        yield reconnects


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.delivery_latency = Histogram(
            "callhub_commit_to_delivery_seconds",
            "From the commit in Redis to the event queued for its subscribers",
            ["type"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.http_duration = Histogram(
            "callhub_http_request_duration_seconds",
            "HTTP requests (not event streams) until their response headers",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._latency_by_type: dict[bytes, Histogram] = {}
        self._durations: dict[tuple[object, str, int], Histogram] = {}

    def request_done(self, scope: Scope, status: int, started: float) -> None:
        """Observe one request's time to its response headers (children cached:
        ``labels()`` takes a lock and builds a key on every call)."""
        endpoint = scope.get("endpoint")
        key = (endpoint, scope["method"], status)
        histogram = self._durations.get(key)
        if histogram is None:
            histogram = self._durations[key] = self.http_duration.labels(
                getattr(endpoint, "__name__", "unmatched"), scope["method"], str(status))
        histogram.observe(time.perf_counter() - started)

    def watch(self, dispatcher: DispatcherCounts, readers: Sequence[ReaderCounts]) -> None:
        self.registry.register(ReplicaCollector(dispatcher, readers))

    def batch_dispatched(self, entries: Iterable[Entry]) -> float:
        """Observe one reader batch's commit-to-delivery latencies; the newest's age (s)."""
        now_ms = time.time() * 1000
        age_ms = 0.0
        for entry_id, fields in entries:
            age_ms = max(0.0, now_ms - int(entry_id.partition(b"-")[0]))
            event_type = fields[ENTRY_TYPE]
            histogram = self._latency_by_type.get(event_type)
            if histogram is None:
                histogram = self._latency_by_type[event_type] = self.delivery_latency.labels(
                    event_type.decode(errors="replace"))
            histogram.observe(age_ms / 1000)
        return age_ms / 1000

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
