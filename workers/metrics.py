"""WorkerMetrics: what a worker exposes (``callhub worker --metrics-port``).

Commits by outcome, the publisher's retries, rejected events by code, calls
the reaper ended, and the voice latencies a caller feels: from the end of the
caller's speech (``speech_final``) to the next prompt starting (``tts_started``),
and each hook's HTTP round trip.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from callhub.events import CallTerminated, Event, HookError, HookResult, SpeechFinal, TtsStarted

VOICE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commits = Counter(
            "callhub_worker_commits", "Events committed, by outcome (committed, duplicate, "
            "rejected)", ["outcome"], registry=r)
        self.retries = Counter(
            "callhub_worker_commit_retries", "Commit batches retried after a Redis error",
            registry=r)
        self.rejected = Counter(
            "callhub_worker_rejected_events", "Events the commit script refused, by code",
            ["code"], registry=r)
        self.reaped = Counter(
            "callhub_worker_reaped_calls", "Calls this worker's reaper ended, by reason",
            ["reason"], registry=r)
        self.response_latency = Histogram(
            "callhub_worker_response_latency_seconds",
            "From the caller's speech_final to the next tts_started of the call",
            buckets=VOICE_BUCKETS, registry=r)
        self.hook_duration = Histogram(
            "callhub_worker_hook_duration_seconds", "Dialog hook HTTP calls, by outcome",
            ["outcome"], buckets=VOICE_BUCKETS, registry=r)

        # session -> when its caller's last speech_final was committed (event time)
        self._spoke: dict[str, float] = {}

    def committed(self, event: Event, outcome: str, code: str | None = None) -> None:
        """Count one event's outcome; derive the voice latencies from stored events."""
        self.commits.labels(outcome).inc()
        if outcome == "rejected":
            self.rejected.labels(code or "unknown").inc()
            return
        if outcome != "committed":
            return
        match event:
            case SpeechFinal():
                self._spoke[event.session_id] = event.timestamp.timestamp()
            case TtsStarted():
                spoke = self._spoke.pop(event.session_id, None)
                if spoke is not None:
                    self.response_latency.observe(max(0.0, event.timestamp.timestamp() - spoke))
            case HookResult():
                self.hook_duration.labels("ok").observe(event.duration_ms / 1000)
            case HookError():
                self.hook_duration.labels(event.error_kind).observe(event.duration_ms / 1000)
            case CallTerminated():
                self._spoke.pop(event.session_id, None)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on a background thread (prometheus-client's server)."""
        start_http_server(port, addr=host, registry=self.registry)
