"""The client's own declarations of the hub's stream notices match the hub's
(the answer Structs are shared: ``callhub.call_views``)."""

from __future__ import annotations

import msgspec

from callhub.client import models
from hub.stream import frames


def test_stream_reset_has_the_hubs_fields() -> None:
    assert [f.name for f in msgspec.structs.fields(models.StreamReset)] == [
        f.name for f in msgspec.structs.fields(frames.StreamReset)]
