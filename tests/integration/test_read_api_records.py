"""List Calls of ended calls on a real redis-server and a real cluster: status,
order, time bounds, caller_id, scopes, bad values, and pages under churn."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from callhub.connections import connect_client
from callhub.keyspace import Keyspace
from callhub.settings import Settings
from hub.api.auth import hash_key
from hub.store.call_store import PagePosition, encode_page_token
from tests.support.hubs import hub_client
from tests.support.strategies import call_started, terminated
from workers.commit.publisher import CallPublisher

pytestmark = pytest.mark.both_engines

CALLERS = ("+15550000001", "+15550000002")
_prefixes = itertools.count()


async def walk(api: httpx.AsyncClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every call of a listing, page by page."""
    calls: list[dict[str, Any]] = []
    query = dict(params)
    for _ in range(10_000):
        answer = await api.get("/v1/calls", params=query)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        calls += page["calls"]
        if not page["next_page_token"]:
            return calls
        query["page_token"] = page["next_page_token"]
    raise AssertionError("the pages never ended")


def ids(calls: list[dict[str, Any]]) -> list[str]:
    return [call["session_id"] for call in calls]


@pytest.fixture
async def ended_calls(aredis: aioredis.Redis, settings: Settings) -> Settings:
    """Twelve calls over 3 shards: e-00 … e-11 ended at 100 + 10·n s (e-05 and
    e-06 in the same second), dialogs alternating, callers in pairs; and two
    active calls."""
    settings = msgspec.structs.replace(settings, shards=3)
    publisher = CallPublisher(aredis, settings)
    await publisher.commit_many(
        [call_started(f"e-{n:02}", dialog=("helpdesk", "billing")[n % 2],
                      caller=CALLERS[n // 2 % 2], at=n) for n in range(12)]
        + [call_started("a-1", at=1), call_started("a-2", dialog="billing", at=2)])
    await publisher.commit_many(
        [terminated(f"e-{n:02}", 2, reason=("normal", "caller_hangup")[n % 2],
                    at=100 + 10 * (n if n != 6 else 5)) for n in range(12)])
    return settings


def newest_first(numbers: list[int]) -> list[str]:
    ends = {n: 100 + 10 * (n if n != 6 else 5) for n in numbers}
    return [f"e-{n:02}" for n in sorted(numbers, key=lambda n: (ends[n], f"e-{n:02}"),
                                        reverse=True)]


async def test_terminated_lists_ended_calls_newest_first_across_shards(
    ended_calls: Settings,
) -> None:
    async with hub_client(ended_calls) as api:
        first = (await api.get("/v1/calls", params={"status": "terminated"})).json()
        assert first["total_count"] == 12 and first["next_page_token"] == ""
        assert ids(first["calls"]) == newest_first(list(range(12)))
        call = first["calls"][-1]
        assert call["session_id"] == "e-00" and call["status"] == "terminated"
        assert call["end_time"] == "2025-06-14T18:31:40Z"
        assert call["reason"] == "normal" and call["final_state"] == "goodbye"
        assert call["caller_id"] == CALLERS[0] and call["duration_seconds"] == 100
        for size in (1, 2, 5):  # the tie of e-05 and e-06 across a page edge too
            assert ids(await walk(api, {"status": "terminated", "page_size": size})) == (
                newest_first(list(range(12))))
        # Absent and "active" are the listing as it always was.
        for params in ({}, {"status": "active"}):
            page = (await api.get("/v1/calls", params=params)).json()
            assert ids(page["calls"]) == ["a-1", "a-2"] and page["total_count"] == 2


async def test_all_lists_the_active_calls_then_the_ended_ones(ended_calls: Settings) -> None:
    async with hub_client(ended_calls) as api:
        expected = ["a-1", "a-2", *newest_first(list(range(12)))]
        for size in (1, 2, 3, 50):
            assert ids(await walk(api, {"status": "all", "page_size": size})) == expected
        page = (await api.get("/v1/calls", params={"status": "all", "page_size": 2})).json()
        assert page["total_count"] == 14 and page["next_page_token"]
        helpdesk = await walk(api, {"status": "all", "dialog_name": "helpdesk"})
        assert ids(helpdesk) == ["a-1", *newest_first(list(range(0, 12, 2)))]


async def test_time_bounds_are_after_inclusive_and_before_exclusive(
    ended_calls: Settings,
) -> None:
    def at(seconds: int) -> str:
        return f"2025-06-14T18:{30 + seconds // 60:02}:{seconds % 60:02}Z"

    async with hub_client(ended_calls) as api:
        # e-02 ended at +120 s, e-05 and e-06 at +150 s, e-07 at +170 s.
        params = {"status": "terminated", "ended_after": at(120), "ended_before": at(170)}
        page = (await api.get("/v1/calls", params=params)).json()
        assert ids(page["calls"]) == newest_first([2, 3, 4, 5, 6])
        assert page["total_count"] == 5
        assert ids(await walk(api, {**params, "page_size": 2})) == newest_first([2, 3, 4, 5, 6])
        # Consecutive windows tile: every call in exactly one.
        tiled = [ids(await walk(api, {"status": "terminated", "ended_after": at(lo),
                                      "ended_before": at(lo + 40), "page_size": 3}))
                 for lo in range(100, 220, 40)]
        assert sorted(itertools.chain(*tiled)) == [f"e-{n:02}" for n in range(12)]
        # Another zone, the same instant.
        zoned = {"status": "terminated", "ended_after": "2025-06-14T20:32:30+02:00"}
        assert ids((await api.get("/v1/calls", params=zoned)).json()["calls"]) == (
            newest_first([5, 6, 7, 8, 9, 10, 11]))
        # With all, the bounds narrow the ended calls; the active ones are all there.
        since = await walk(api, {"status": "all", "ended_after": at(200)})
        assert ids(since) == ["a-1", "a-2", "e-11", "e-10"]


async def test_caller_id_finds_exactly_that_callers_ended_calls(ended_calls: Settings) -> None:
    async with hub_client(ended_calls) as api:
        first = [n for n in range(12) if n // 2 % 2 == 0]
        page = (await api.get("/v1/calls", params={"status": "terminated",
                                                   "caller_id": CALLERS[0]})).json()
        assert ids(page["calls"]) == newest_first(first) and page["total_count"] == len(first)
        assert ids(await walk(api, {"status": "terminated", "caller_id": CALLERS[0],
                                    "page_size": 2})) == newest_first(first)
        both = await walk(api, {"status": "terminated", "caller_id": CALLERS[1],
                                "dialog_name": "billing"})
        assert ids(both) == newest_first([n for n in range(12) if n // 2 % 2 and n % 2])
        nobody = (await api.get("/v1/calls", params={"status": "terminated",
                                                     "caller_id": "+15559999999"})).json()
        assert nobody == {"calls": [], "next_page_token": "", "total_count": 0}


@pytest.fixture
def scoped(ended_calls: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "keys.toml"
    path.write_text(f"""
[[keys]]
name = "helpdesk-dashboard"
sha256 = "{hash_key('helpdesk-key')}"
dialogs = ["helpdesk"]
""")
    return msgspec.structs.replace(ended_calls, api_keys_file=str(path))


async def test_a_scoped_key_lists_counts_and_finds_only_its_dialogs_ended_calls(
    scoped: Settings,
) -> None:
    helpdesk = [n for n in range(12) if n % 2 == 0]
    async with hub_client(scoped) as api:
        api.headers["X-API-Key"] = "helpdesk-key"
        page = (await api.get("/v1/calls", params={"status": "terminated"})).json()
        assert ids(page["calls"]) == newest_first(helpdesk) and page["total_count"] == 6
        assert ids(await walk(api, {"status": "terminated", "page_size": 4})) == (
            newest_first(helpdesk))
        everything = (await api.get("/v1/calls", params={"status": "all"})).json()
        assert ids(everything["calls"]) == ["a-1", *newest_first(helpdesk)]
        assert everything["total_count"] == 7
        # A caller of both dialogs: only the helpdesk calls, and only they are counted.
        caller = (await api.get("/v1/calls", params={"status": "terminated",
                                                     "caller_id": CALLERS[1]})).json()
        assert ids(caller["calls"]) == newest_first([2, 6, 10]) and caller["total_count"] == 3
        foreign = (await api.get("/v1/calls", params={"status": "terminated",
                                                      "dialog_name": "billing"})).json()
        assert foreign == {"calls": [], "next_page_token": "", "total_count": 0}
        assert (await api.get("/v1/calls/e-01")).status_code == 404


async def test_a_call_whose_records_expired_is_skipped_not_an_error(
    ended_calls: Settings,
) -> None:
    """The index outlives a call's hash between two trims: the listing skips it."""
    client = connect_client(ended_calls)
    keys: Keyspace = ended_calls.keyspace
    for sid in ("e-03", "e-04"):
        await client.delete(keys.call(sid))
        await client.delete(keys.call_events(sid))
    # And a namesake of e-04 started since: its hash is an active call's.
    await CallPublisher(client, ended_calls).commit(call_started("e-04", at=500))
    await client.aclose()
    async with hub_client(ended_calls) as api:
        assert ids(await walk(api, {"status": "terminated", "page_size": 2})) == (
            newest_first([n for n in range(12) if n not in (3, 4)]))


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=ended", "status"), ("status=TERMINATED", "status"), ("status=", "status"),
        ("status=terminated&caller_id=", "caller_id"),
        ("status=terminated&ended_after=", "ended_after"),
        ("status=active&status=all", "status"),
        ("status=terminated&ended_after=yesterday", "ended_after"),
        ("status=terminated&ended_after=2025-06-14", "ended_after"),
        ("status=terminated&ended_after=2025-06-14T18:30:00", "ended_after"),  # no zone
        ("status=terminated&ended_before=2025-06-14T18:30:00+02:00", "ended_before"),  # + unsent
        ("status=terminated&ended_before=2025-13-14T18:30:00Z", "ended_before"),
        ("ended_after=2025-06-14T18:30:00Z", "ended_after"),  # only for ended calls
        ("status=active&ended_before=2025-06-14T18:30:00Z", "ended_before"),
        ("status=terminated&ended_after=2025-06-14T18:31:00Z&ended_before=2025-06-14T18:30:00Z",
         "ended_before"),
        ("caller_id=%2B15551234567", "caller_id"), ("status=all&caller_id=x", "caller_id"),
        ("status=terminated&caller_id=a%0Ab", "caller_id"),
        (f"status=terminated&caller_id={'1' * 65}", "caller_id"),
        ("status=terminated&page_token=garbage", "page_token"),
    ],
)
async def test_a_bad_value_is_a_400_naming_it(
    api: httpx.AsyncClient, query: str, param: str
) -> None:
    answer = await api.get(f"/v1/calls?{query}")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_parameter" and error["param"] == param
    assert error["message"]


async def test_a_page_token_used_with_other_filters_is_a_400(ended_calls: Settings) -> None:
    async with hub_client(ended_calls) as api:
        first = (await api.get("/v1/calls", params={
            "status": "terminated", "caller_id": CALLERS[0], "page_size": 1})).json()
        token = first["next_page_token"]
        for changed, params in [
            ("status", {"status": "all"}),
            ("status", {}),
            ("caller_id", {"status": "terminated", "caller_id": CALLERS[1]}),
            ("dialog_name", {"status": "terminated", "caller_id": CALLERS[0],
                             "dialog_name": "helpdesk"}),
            ("ended_after", {"status": "terminated", "caller_id": CALLERS[0],
                             "ended_after": "2025-06-14T18:30:00Z"}),
        ]:
            answer = await api.get("/v1/calls", params={**params, "page_token": token})
            assert answer.status_code == 400
            assert answer.json()["error"] == {
                "code": "invalid_parameter", "param": "page_token",
                "message": f"page_token belongs to a listing with a different {changed}"}


async def test_a_forged_token_is_answered_not_a_5xx(ended_calls: Settings) -> None:
    """Anyone can seal a token: positions past the bounds or of the other phase."""
    async with hub_client(ended_calls) as api:
        for position, params in [
            (PagePosition("", 10**18, "~", "terminated", ended=True), {"status": "terminated"}),
            (PagePosition("", -(10**18), "", "all", ended=False), {"status": "all"}),
            (PagePosition("", 0, "e-05", "active", ended=True), {}),
        ]:
            answer = await api.get("/v1/calls", params={
                **params, "page_token": encode_page_token(position)})
            assert answer.status_code == 200, answer.text


churn = st.lists(st.tuples(st.sampled_from(["end", "start", "none"]), st.integers(0, 10_000)),
                 max_size=25)


@hypothesis_settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ended_at=st.lists(st.integers(0, 6), max_size=30),  # end seconds: many ties
    active=st.integers(0, 12),
    shards=st.integers(1, 3),
    page_size=st.integers(1, 6),
    status=st.sampled_from(["terminated", "all"]),
    dialog=st.sampled_from(["", "helpdesk"]),
    steps=churn,
)
def test_pages_of_ended_calls_under_churn_never_skip_or_repeat_one(
    settings: Settings, ended_at: list[int], active: int, shards: int, page_size: int,
    status: str, dialog: str, steps: list[tuple[str, int]],
) -> None:
    """Calls end (at any time: before the position or after it) and start
    between pages. terminated: every call ended before the walk comes exactly
    once, a call that ends during it at most once. all: every call that
    existed at the start comes, and only a call that ended during the walk
    may come twice, first active, then terminated."""
    settings = msgspec.structs.replace(settings, shards=shards,
                                       prefix=f"churn{next(_prefixes)}")
    dialogs = ("helpdesk", "billing")

    async def run() -> tuple[list[dict[str, Any]], set[str], set[str], set[str]]:
        client = connect_client(settings)
        publisher = CallPublisher(client, settings)
        ended = [f"x-{n}" for n in range(len(ended_at))]
        running = [f"r-{n}" for n in range(active)]
        await publisher.commit_many(
            [call_started(sid, dialog=dialogs[n % 2]) for n, sid in enumerate(ended + running)])
        await publisher.commit_many([terminated(sid, 2, at=at * 10)
                                     for sid, at in zip(ended, ended_at, strict=True)])
        wanted = {sid for n, sid in enumerate(ended + running) if not dialog or n % 2 == 0}
        ended_before = {sid for sid in ended if sid in wanted}
        ended_during: set[str] = set()
        seen: list[dict[str, Any]] = []
        todo = iter(steps)
        params: dict[str, Any] = {"status": status, "page_size": page_size}
        if dialog:
            params["dialog_name"] = dialog
        async with hub_client(settings) as api:
            for _ in range(1000):
                answer = await api.get("/v1/calls", params=params)
                assert answer.status_code == 200, answer.text
                page = answer.json()
                seen += page["calls"]
                if not page["next_page_token"]:
                    break
                params["page_token"] = page["next_page_token"]
                kind, number = next(todo, ("none", 0))
                if kind == "end" and running:
                    sid = running.pop(number % len(running))
                    ended_during.add(sid)
                    await publisher.commit(terminated(sid, 2, at=number % 80))
                elif kind == "start":
                    await publisher.commit(call_started(f"n-{number}-{len(seen)}",
                                                        dialog=dialogs[number % 2]))
        await client.aclose()
        return seen, wanted, ended_before, ended_during

    seen, wanted, ended_before, ended_during = asyncio.run(run())
    assert all(not dialog or call["dialog_name"] == dialog for call in seen)
    pairs = [(call["session_id"], call["status"]) for call in seen]
    assert len(pairs) == len(set(pairs)), "a call was returned twice in one state"
    returned = [call["session_id"] for call in seen]
    twice = {sid for sid in returned if returned.count(sid) > 1}
    assert twice <= ended_during, "only a call that ended during the walk comes twice"
    assert ended_before <= set(returned), "a call that ended before the walk was skipped"
    if status == "all":
        assert wanted <= set(returned), "a call that existed throughout was skipped"
    else:
        assert all(call["status"] == "terminated" for call in seen)
