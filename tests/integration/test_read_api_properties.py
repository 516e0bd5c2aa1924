"""Properties of the read API on a real redis-server: pagination under churn,
and no query parameter can make it answer with a 5xx."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import httpx
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callhub.settings import Settings
from tests.support.hubs import hub_client
from tests.support.strategies import call_started, terminated
from workers.commit.publisher import CallPublisher

churn_steps = st.lists(
    st.tuples(st.sampled_from(["start", "end", "none"]), st.integers(0, 10_000)),
    max_size=30,
)


@hypothesis_settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.lists(st.integers(0, 5), max_size=40),  # start seconds: many ties
    shards=st.integers(1, 3),
    page_size=st.integers(1, 8),
    dialog=st.sampled_from(["", "helpdesk"]),
    churn=churn_steps,
)
def test_walking_pages_under_churn_never_repeats_or_skips_a_call(
    redis_url: str, initial: list[int], shards: int, page_size: int, dialog: str,
    churn: list[tuple[str, int]],
) -> None:
    with redis.Redis.from_url(redis_url) as sync:
        sync.flushall()
    settings = Settings(redis_url=redis_url, shards=shards)

    async def walk() -> tuple[list[str], set[str]]:
        client = aioredis.Redis.from_url(redis_url)
        publisher = CallPublisher(client, settings)
        dialogs = ["helpdesk", "billing"]
        active = {f"c-{n}": at for n, at in enumerate(initial)}
        await publisher.commit_many([
            call_started(sid, at=at, dialog=dialogs[n % 2])
            for n, (sid, at) in enumerate(active.items())
        ])
        wanted = {sid for n, sid in enumerate(active) if not dialog or n % 2 == 0}
        ended: set[str] = set()
        seen: list[str] = []
        steps = iter(churn)
        params: dict[str, str | int] = {"page_size": page_size}
        if dialog:
            params["dialog_name"] = dialog
        async with hub_client(settings) as api:
            for _ in range(1000):
                answer = await api.get("/v1/calls", params=params)
                assert answer.status_code == 200, answer.text
                page = answer.json()
                seen += [call["session_id"] for call in page["calls"]]
                if not page["next_page_token"]:
                    break
                params["page_token"] = page["next_page_token"]
                kind, number = next(steps, ("none", 0))
                if kind == "start":  # a new call, maybe before the cursor, maybe after
                    sid = f"new-{number}-{len(seen)}"
                    await publisher.commit(call_started(sid, at=number % 6))
                elif kind == "end" and active:
                    sid = sorted(active)[number % len(active)]
                    del active[sid]
                    ended.add(sid)
                    await publisher.commit(terminated(sid, 2))
        await client.aclose()
        return seen, wanted - ended

    seen, stayed_active = asyncio.run(walk())
    assert len(seen) == len(set(seen)), "a call was returned twice"
    assert stayed_active <= set(seen), "a call active throughout was skipped"


parameter_names = st.sampled_from(
    ["page_size", "page_token", "dialog_name", "api_key", "session_id", "x", "page_size[]",
     "status", "caller_id", "ended_after", "ended_before"]
) | st.text(max_size=12)
parameter_values = (
    st.text(max_size=40)
    | st.integers(-(10**30), 10**30).map(str)
    | st.sampled_from(["", "0", "1", "1000", "1001", "true", "helpdesk", "%00", "\u2603",
                      "terminated", "all", "active", "2025-06-14T18:30:00Z",
                      "2025-06-14T18:30:00+99:00", "9999-12-31T23:59:59-23:59",
                      "0001-01-01T00:00:00+23:59"])
)


@hypothesis_settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/v1/calls", "/v1/calls/c-1", "/v1/calls/\u2603", "/v1/calls/%7B"]),
    pairs=st.lists(st.tuples(parameter_names, parameter_values), max_size=5),
)
def test_no_query_can_make_the_api_answer_5xx(
    redis_url: str, path: str, pairs: list[tuple[str, str]]
) -> None:
    async def ask() -> httpx.Response:
        async with hub_client(Settings(redis_url=redis_url)) as api:
            return await api.get(f"{path}?{urlencode(pairs)}")

    answer = asyncio.run(ask())
    assert answer.status_code in (200, 400, 404), answer.text
    assert answer.headers["content-type"] == "application/json"
    if answer.status_code != 200:
        error = answer.json()["error"]
        assert error["code"] and error["message"]
