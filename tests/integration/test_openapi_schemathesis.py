"""Schemathesis against a live `callhub serve`: generated from the OpenAPI
document the hub serves (itself generated from the msgspec Structs), it finds
no 5xx and no response that breaks the document's schemas. The event stream's
frames are checked against the same document separately."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest
import redis.asyncio as aioredis
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from callhub.settings import Settings
from hub.api.openapi import openapi_document
from hub.stream.frames import StreamReset
from tests.support.fences import fence
from tests.support.hubs import serving
from tests.support.processes import HubProcess, start_hub
from tests.support.redis_servers import RedisServer
from tests.support.spec_examples import publish_spec_examples, spec_events
from tests.support.sse import subscribe
from workers.commit.publisher import CallPublisher

EVENTS_PATH = "/v1/calls/events"
# The event stream never ends, and schemathesis reads a whole response before it
# checks it: every request it made there that was valid would hang. So the
# stream is left out of the generated tests; its 400s are tested in
# test_event_stream.py, and its frames against this document below.
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path=EVENTS_PATH)


@pytest.fixture(scope="module")
def live_hub(redis_server: object) -> Iterator[HubProcess]:
    url = redis_server.url  # type: ignore[attr-defined]
    publish_spec_examples(url, 2)
    hub = start_hub(url)
    yield hub
    hub.stop()


def test_the_served_document_is_the_generated_one(live_hub: HubProcess) -> None:
    assert httpx.get(f"{live_hub.url}/openapi.json").json() == openapi_document()


@schema.parametrize()
@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_response_fits_the_schema(
    case: schemathesis.Case, live_hub: HubProcess
) -> None:
    # Opaque page tokens and session ids cannot be described fully by a schema:
    # a well-formed-looking but unissued token is rightly a 400, so "every
    # schema-valid request is accepted" does not hold by design. Every other
    # check runs, including "schema-invalid requests are rejected".
    case.call_and_validate(
        base_url=live_hub.url,
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )


def _validator(subschema: dict[str, Any]) -> Any:
    document = openapi_document()
    return jsonschema_rs.validator_for({**subschema, "components": document["components"]})


async def test_every_frame_of_the_stream_fits_the_documented_event(
    redis_server: RedisServer,
) -> None:
    operation = openapi_document()["paths"][EVENTS_PATH]["get"]
    media = operation["responses"]["200"]["content"]["text/event-stream"]
    frame_schema = media["schema"]
    frame = _validator(frame_schema)
    data = _validator(frame_schema["properties"]["data"]["contentSchema"])
    # Its own key prefix: the shared server's other data stays as it is.
    settings = Settings(redis_url=redis_server.url, prefix="openapi-frames",
                        ping_interval_ms=200)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with serving(settings) as live, \
                subscribe(f"{live.url}{EVENTS_PATH}") as stream:
            outcomes = await CallPublisher(client, settings).commit_many(spec_events())
            await fence(stream, outcomes, 1)
    finally:
        await client.aclose()
    assert len(stream.events) == len(outcomes) > 0
    for one in stream.frames:
        fields = {name: value for name, value in (
            ("id", one.id), ("event", one.event), ("retry", one.retry),
            ("data", one.data.decode() if one.data is not None else None),
        ) if value is not None}
        frame.validate(fields)
        if one.data is not None:
            data.validate(msgspec.json.decode(one.data))
    reset = StreamReset(reason="cursor_expired", oldest_position="AA", message="gone")
    data.validate(msgspec.json.decode(msgspec.json.encode(reset)))
    assert not data.is_valid({"type": "call_started"})  # the schema does check


def test_the_stream_is_documented_with_its_parameters() -> None:
    operation = openapi_document()["paths"][EVENTS_PATH]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"event_types", "session_id", "dialog_name", "include_history",
                     "last_event_id", "Last-Event-ID"}
    assert set(operation["responses"]) == {"200", "400", "401", "429", "500", "503"}
    types = _validator(next(p["schema"] for p in operation["parameters"]
                            if p["name"] == "event_types"))
    assert types.is_valid("call_started, speech_final")
    assert types.is_valid("")
    assert not types.is_valid("call_started,bogus")
