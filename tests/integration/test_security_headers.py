"""Every kind of answer a replica gives carries the security headers; call data is never stored."""

from __future__ import annotations

import httpx
import msgspec

from callhub.settings import Settings
from tests.support.hubs import serving
from tests.support.sse import subscribe

_EVERY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def _check(answer: httpx.Response, *, data: bool) -> None:
    what = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
    for name, value in _EVERY.items():
        assert answer.headers.get_list(name) == [value], what
    if data:
        assert answer.headers.get_list("cache-control") == ["no-store"], what


async def test_every_kind_of_answer_carries_them(settings: Settings) -> None:
    keyed = msgspec.structs.replace(settings, api_keys="s3cret-key")
    async with serving(keyed) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as api:
        key = {"X-API-Key": "s3cret-key"}
        for path, status, data in (("/v1/calls", 200, True), ("/v1/calls/no-such-call", 404, True),
                                   ("/v1/calls?page_size=0", 400, True),
                                   ("/v1/webhooks", 200, True),
                                   ("/", 200, False), ("/openapi.json", 200, False),
                                   ("/healthz", 200, False), ("/metrics", 200, False),
                                   ("/no/such/path", 404, False)):
            answer = await api.get(path, headers=key)
            assert answer.status_code == status, path
            _check(answer, data=data)
        unauthorised = await api.get("/v1/calls")
        assert unauthorised.status_code == 401
        _check(unauthorised, data=True)
        not_allowed = await api.post("/v1/calls", headers=key)
        assert not_allowed.status_code == 405
        _check(not_allowed, data=True)
        refused = await api.get("/v1/calls/events", params={"event_types": "bogus"}, headers=key)
        assert refused.status_code == 400
        _check(refused, data=False)  # the stream's own answers: the headers every answer has
        async with subscribe(f"{live.url}/v1/calls/events", headers=key, client=api) as stream:
            assert stream.response.status_code == 200
            _check(stream.response, data=True)  # its own no-store, not a second one
