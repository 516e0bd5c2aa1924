"""``GET /v1/schemas/events.json``: a JSON Schema (2020-12) that an independent
validator (``jsonschema``) accepts as a schema, and that accepts every stored
example event and every event the schema's Structs can make, refusing broken ones."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callhub import events as ev
from callhub.settings import Settings
from hub.api.event_schemas import events_schema
from tests.support.paths import DATA
from tests.support.strategies import events_of

validator = jsonschema.Draft202012Validator(events_schema())


async def test_the_hub_serves_a_valid_2020_12_document_linked_from_openapi(
    api: httpx.AsyncClient,
) -> None:
    answer = await api.get("/v1/schemas/events.json")
    assert answer.status_code == 200
    document = answer.json()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["callhub_schema_version"] == 1
    tags = {d["properties"]["type"]["enum"][0] for d in document["$defs"].values()
            if "type" in d.get("properties", {})}
    assert tags == set(ev.EVENT_TYPES)
    openapi = (await api.get("/openapi.json")).json()
    assert openapi["externalDocs"]["url"] == "/v1/schemas/events.json"
    assert "/v1/schemas/events.json" in openapi["paths"]
    assert (await api.get("/v1/schemas/events.json?x=1")).status_code == 400


async def test_it_needs_no_key(settings: Settings) -> None:
    from tests.support.hubs import hub_client

    keyed = Settings(redis_url=settings.redis_url, api_keys="k1")
    async with hub_client(keyed) as api:
        assert (await api.get("/v1/schemas/events.json")).status_code == 200
        assert (await api.get("/v1/calls")).status_code == 401


def test_every_stored_example_event_validates() -> None:
    lines = (DATA / "spec_events.jsonl").read_text().splitlines()
    assert lines
    for line in lines:
        validator.validate(json.loads(line))


@given(event=st.sampled_from(list(ev.EVENT_CLASSES.values())).flatmap(events_of))
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
def test_every_event_the_structs_make_validates(event: ev.Event) -> None:
    validator.validate(json.loads(ev.encode_event(event)))


SPEECH: dict[str, Any] = json.loads((DATA / "spec_events.jsonl").read_text().splitlines()[1])


@pytest.mark.parametrize("broken", [
    {**SPEECH, "confidence": 1.5},
    {**SPEECH, "type": "speech_finale"},
    {**SPEECH, "session_id": "has space"},
    {**SPEECH, "timestamp": "2025-06-14T18:30:04+02:00"},
    {k: v for k, v in SPEECH.items() if k != "transcript"},
    {**SPEECH, "seq": 0},
])
def test_broken_events_are_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
