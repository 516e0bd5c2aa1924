"""A replica's /metrics, request ids and JSON logs, against a real redis-server."""

from __future__ import annotations

import json

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from callhub.settings import Settings
from tests.support.hubs import serving
from tests.support.polling import async_wait_until, wait_until
from tests.support.processes import start_hub
from tests.support.sse import subscribe
from tests.support.strategies import call_started, dtmf
from workers.commit.publisher import CallPublisher


async def scrape(url: str) -> dict[str, float]:
    found: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


async def test_metrics_count_subscribers_deliveries_latency_and_requests(
    settings: Settings, aredis: aioredis.Redis
) -> None:
    async with serving(settings) as live, \
            subscribe(f"{live.url}/v1/calls/events") as first, \
            subscribe(f"{live.url}/v1/calls/events") as second:
        await CallPublisher(aredis, settings).commit_many(
            [call_started("m-1"), *(dtmf("m-1", seq) for seq in range(2, 12))])
        await async_wait_until(lambda: len(first.events) == 11 and len(second.events) == 11,
                               what="both streams to get the 11 events")
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(f"{live.url}/v1/calls")
            await client.get(f"{live.url}/v1/calls/m-1")
        metrics = await scrape(live.url)
    assert metrics["callhub_stream_subscribers{}"] == 2
    assert metrics["callhub_stream_deliveries_total{}"] == 22
    assert metrics['callhub_shard_events_read_total{shard="0"}'] == 11
    assert metrics['callhub_commit_to_delivery_seconds_count{type="dtmf_received"}'] == 10
    assert metrics['callhub_commit_to_delivery_seconds_count{type="call_started"}'] == 1
    assert metrics['callhub_shard_reader_lag_seconds{shard="0"}'] < 60
    assert metrics["callhub_stream_slow_client_disconnects_total{}"] == 0
    assert metrics[('callhub_http_request_duration_seconds_count'
                    '{method="GET",route="list_calls",status="200"}')] == 1
    assert metrics[('callhub_http_request_duration_seconds_count'
                    '{method="GET",route="get_call",status="200"}')] == 1


async def test_every_answer_carries_a_request_id(settings: Settings) -> None:
    async with serving(settings) as live, httpx.AsyncClient(timeout=5) as client:
        mine = await client.get(f"{live.url}/v1/calls", headers={"X-Request-ID": "abc-123"})
        fresh = await client.get(f"{live.url}/v1/calls/nope")
        bad = await client.get(f"{live.url}/v1/calls",
                               headers={"X-Request-ID": "no spaces\tallowed"})
        async with subscribe(f"{live.url}/v1/calls/events",
                             headers={"X-Request-ID": "stream-1"}) as stream:
            await async_wait_until(lambda: stream.response.headers.get("x-request-id"),
                                   what="the stream's headers")
            stream_id = stream.response.headers["x-request-id"]
    assert mine.headers["x-request-id"] == "abc-123"
    assert fresh.status_code == 404 and len(fresh.headers["x-request-id"]) == 32
    assert bad.headers["x-request-id"] != "no spaces\tallowed"
    assert stream_id == "stream-1"


def test_json_logs_are_one_object_per_line_with_request_ids_and_no_keys(redis_url: str) -> None:
    hub = start_hub(redis_url, env={"CALLHUB_LOG_FORMAT": "json",
                                    "CALLHUB_API_KEYS": "sekrit-key-1"})
    try:
        httpx.get(f"{hub.url}/v1/calls?api_key=sekrit-key-1",
                  headers={"X-Request-ID": "log-me"}, timeout=5)
        try:
            wait_until(lambda: "log-me" in hub.output(), timeout=10, interval=0.05,
                       what="the access log line of request log-me")
        except AssertionError as error:
            raise AssertionError(f"{error}; the hub's output:\n{hub.output()}") from error
    finally:
        hub.stop()
    lines = [line for line in hub.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r.get("request_id") == "log-me"]
    assert access and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert "sekrit-key-1" not in hub.output()
