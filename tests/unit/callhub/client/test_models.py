"""The client's own declarations of the hub's answers match the hub's Structs field by
field (the client may not import hub; this test may import both)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from callhub.client import models
from hub.api import call_records
from hub.store import call_store
from hub.stream import frames


def shape(kind: type[msgspec.Struct]) -> dict[str, Any]:
    _, components = msgspec.json.schema_components((kind,))
    found = components[kind.__name__]
    return {"properties": found["properties"], "required": found.get("required", [])}


@pytest.mark.parametrize(("ours", "theirs"), [
    (models.Call, call_store.CallView),
    (models.CallEventsPage, call_records.CallEventsPage),
])
def test_the_client_reads_what_the_hub_sends(ours: type[msgspec.Struct],
                                            theirs: type[msgspec.Struct]) -> None:
    assert shape(ours) == shape(theirs)


def test_a_page_holds_calls_as_the_hubs_does() -> None:
    ours = msgspec.json.schema(models.CallPage)["$defs"]["CallPage"]
    theirs = msgspec.json.schema(call_store.ListCallsPage)["$defs"]["ListCallsPage"]
    assert ours["required"] == theirs["required"]
    assert set(ours["properties"]) == set(theirs["properties"])


def test_stream_reset_has_the_hubs_fields() -> None:
    assert [f.name for f in msgspec.structs.fields(models.StreamReset)] == [
        f.name for f in msgspec.structs.fields(frames.StreamReset)]
